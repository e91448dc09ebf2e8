"""The lessons' experiments as functions of a seed.

A lesson calls one of these to show a run (or a few); tests/test_claims_lessonNN.py calls the same
function for seeds 0-4 and checks that every claim the lesson's prose draws from it holds for
each. One module per lesson keeps the plumbing out of the notebooks.
"""
