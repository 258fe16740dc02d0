"""`refinery frames`: videos read once, and only the frames to keep written (the command is
refinery/cli/frames.py; docs/frames.md says what it does and why).

    extract.py   thin_video: one video read to its end, through the decisions, into a folder
    thin.py      the decisions, a window of frames at a time, as dedup's funnel decides
    read.py      a video opened safely for OpenCV, and a decoded frame as the tests see it
    folder.py    the output folder: frames' names, each frame written as a new file
    results.py   what a video's thinning did (written, skipped spans, errors)
    page.py      the thinning as a review page's report, with its spans' thumbnails
"""
