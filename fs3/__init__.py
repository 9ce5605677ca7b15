"""fs3: a 3FS-like chunked distributed file service over gRPC."""
