"""Reading and writing bags, datasets and file formats (no ROS needed): bag (ROS1 bags), samples (one
Sample iterator per dataset layout), pair_cache (training pairs), presets (topic names), the
dataset readers (mvsec, ddd17, ess, evdistill_png, evsegnet) and convert."""
