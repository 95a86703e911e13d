"""The Iris model of mlops-stack: data schema, training, registry and serving."""

__version__ = "0.1.0"
