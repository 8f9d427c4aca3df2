"""Wire protocols of the inference server: Open Inference Protocol v2 and MLflow scoring.

Each module is pure encode/decode (bytes in, model input out; predictions in, bytes out), so
the app stays a thin adapter and the formats are unit-tested without a server.
"""
