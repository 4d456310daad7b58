"""The CloudAgent provider contract: client, typed errors, rules, callback and failed-file parsing."""
