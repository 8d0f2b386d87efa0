"""Thin rclpy nodes, one per file: parameters, topics, QoS, diagnostics; no math."""
