"""rxsweep: sweep domain-adversarial training on RxRx1 with Ray, rank trials by batch mixing."""

__version__ = "0.1.0"
