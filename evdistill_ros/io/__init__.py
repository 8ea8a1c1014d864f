"""Reading and writing bags, datasets and file formats (no ROS needed)."""
