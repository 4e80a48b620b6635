# (filled by the dataset stage)
