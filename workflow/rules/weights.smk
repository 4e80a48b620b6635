# (filled by the weights stage)
