# cli/: the qchain command; it uses only the public qchain.h.
