"""Robot policies built on the memories (LeRobot conventions: one folder per policy)."""
