"""Retrieval: the images most like a query, from the same embeddings dedup uses (no torch).

index.py     a folder -> an index on disk (embeddings, pixel thumbnails, SIFT), searched by image
methods.py   ranking a gallery for a query: embedding, pixel metrics, SIFT (two-stage)
faces.py     the largest face in a picture (OpenCV's Haar cascade)
evaluate.py  held-out queries over class folders: top-1/top-5, precision@k, recall@k, mAP
sheet.py     an HTML contact sheet of queries and their results
"""
