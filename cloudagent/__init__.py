"""CloudAgent's contract as leadhub reads it (docs/cloudagent-contract.md): a plain package, no Django models, no
RQ, importing no project app, so the import preview and the send-time check share one rule.

errors        the typed errors of a request, a callback body and a failed-rows file
rules         limits, the Name alphabet, row length, Priority/ExpiryDate, phone header aliases, delimiters
client        the bulk upload API client, and the failed-rows download on the same session and User-Agent
callbacks     reading a callback body
failed_files  reading a failed-rows file
"""
