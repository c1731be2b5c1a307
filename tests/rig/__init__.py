"""Test rig: private network namespace checks, a real registry, the offline test images."""
