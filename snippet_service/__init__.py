"""snippet-service: paste code, get it syntax-highlighted by a background job."""
