"""Developer tools, not science: the conda environments generated from requirements.txt, the headless browser of
the page tests and screenshots, and the comparison of two result trees. No stage imports them."""
