"""Building blocks of the synthetic demo corpus (docs/design.md §5): sentences, speech, music and instructions.

Built by `training/make_demo_corpus.py` (`build`) and checked by `training/check_alignment.py` (`check`); the
rest of the package never imports it. Every function here is a pure
function of its arguments (random choices come from an explicit `numpy.random.Generator`), so a clip is
reproducible from its id and the corpus seed alone.
"""
