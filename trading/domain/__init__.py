"""The math and rules of the product: pure functions, no I/O, no clock reads, no logging."""
