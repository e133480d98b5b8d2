"""Logic above the ports: pipeline runs, paths, the review gate, retention.

Services use only the ports; they never import a backend.
"""
