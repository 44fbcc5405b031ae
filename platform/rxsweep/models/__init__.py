"""rxsweep.models."""
