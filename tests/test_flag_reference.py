"""The generated flag reference lists every flag, with the default and help it is declared with."""

import dataclasses

from ns3l_tf import config, flag_reference, methods, settings


def test_every_run_and_method_flag_has_its_row():
    text = flag_reference.markdown()
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `--")
    }
    expected = set(config.RUN_FIELDS)
    for name, method in methods.REGISTRY.items():
        expected |= {settings.flag_name(name, f) for f in dataclasses.fields(method.settings)}
    assert set(rows) == {f"`--{name}`" for name in expected}
    assert rows["`--backend`"].split("|")[2].strip() == "(none)"
    assert rows["`--ns3l_weight`"].split("|")[2].strip() == "`1.0`"
    assert "*Tunable.*" in rows["`--ns3l_weight`"] and "*Tunable.*" not in rows["`--vat_xi`"]
    assert "## `vat` (base)" in text and "## `ns3l` (term)" in text
