"""Event outputs: the service that feeds them, and the outputs shipped."""
