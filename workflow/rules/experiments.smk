# (filled by the experiments stage)
