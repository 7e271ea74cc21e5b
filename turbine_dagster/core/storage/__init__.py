"""Files on local disk or S3: atomic writes, transient errors, native model files."""
