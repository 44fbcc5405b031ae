"""rxsweep.training."""
