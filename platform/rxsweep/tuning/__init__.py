"""rxsweep.tuning."""
