// MicroHTTP module
