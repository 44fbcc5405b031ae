"""rxsweep.analysis."""
