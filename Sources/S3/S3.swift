// S3 module
