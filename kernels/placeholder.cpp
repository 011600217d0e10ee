// Keeps the kernels library non-empty before any kernel exists.
