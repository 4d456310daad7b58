"""leadhub: lead management for call-centre teams dialling through Ozonetel CloudAgent."""

__version__ = "0.1.0"
