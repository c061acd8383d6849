"""Open and click tracking: sealed tokens, the pixel, the click redirect, unsubscribe, the worker's drain."""
