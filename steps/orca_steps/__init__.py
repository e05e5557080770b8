"""Code that runs inside the pipeline's pods: one module per step, CLI ``orca-step``."""
__version__ = "0.1.0"
