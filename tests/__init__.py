"""Trial tests of smtplatrine."""
