"""Tracking: MLflow. The store and a search's parent run, the writer that sends trials' writes
off Tune's loop through a durable outbox, the readback of a logged search, the leaderboard and
the champion model's file.

It may import `searcher.spec`, `searcher.training` and `searcher.sampling`; never the Tune side
or the commands.
"""
