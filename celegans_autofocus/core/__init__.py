"""The science: numpy/OpenCV only. Nothing here imports rclpy or torch."""
