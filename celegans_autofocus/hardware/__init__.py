"""Device backends behind small interfaces: cameras and stepper drivers."""
