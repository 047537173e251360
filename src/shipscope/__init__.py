"""shipscope: delivery-pipeline observability, from CI/CD events to DORA metrics."""

__version__ = "0.1.0"
