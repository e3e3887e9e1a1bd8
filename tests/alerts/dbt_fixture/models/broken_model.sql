select cast('<b>Grüße & 100%</b>' as integer) as impossible
