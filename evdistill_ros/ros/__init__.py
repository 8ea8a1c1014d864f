"""ROS nodes over the core library (the only part that needs rospy): accumulator_node,
segmentation_node, train_node, and their shared pieces (common, latest, event_subscriber)."""
