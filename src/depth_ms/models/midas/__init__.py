"""Fast relative depth on MindSpore: MiDaS v2.1 small, DPT (MiDaS v3) and Depth Anything V2."""
