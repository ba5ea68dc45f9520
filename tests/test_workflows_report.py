"""The run report's records: the share of tiles per class and the QC's area fractions each
have their own key, and records written before (one ``class_fractions`` key for both)
are still read."""

from __future__ import annotations

import csv
import json

from histotile.workflows.tasks.report import SlideRecord, write_report
from histotile.workflows.tasks.resumable import _skipped

OLD_PREDICT = {"slide": "a", "path": "/slides/a.svs", "status": "ok", "tiles": 10,
               "class_fractions": {"normal": 0.7, "tumour": 0.3}, "decision": "positive",
               "seconds": 2.0, "error": None, "outputs": {}, "extra": {"qc": {"flag": "pass"}},
               "warning": None}
OLD_QC = {"slide": "b", "path": "/slides/b.svs", "status": "ok", "tiles": 0,
          "class_fractions": {"tissue": 0.4, "pen": 0.01}, "decision": "pass",
          "seconds": 1.0, "error": None, "outputs": {},
          "extra": {"reasons": [], "view_mpp": 8.0}, "warning": None}


def test_old_records_are_read_into_their_own_keys():
    predicted = SlideRecord.from_dict(OLD_PREDICT)
    assert predicted.class_shares == {"normal": 0.7, "tumour": 0.3}
    assert predicted.area_fractions == {}
    qc = SlideRecord.from_dict(OLD_QC)
    assert qc.area_fractions == {"tissue": 0.4, "pen": 0.01} and qc.class_shares == {}
    new = predicted.to_dict()
    assert "class_fractions" not in new and SlideRecord.from_dict(new) == predicted


def test_a_finished_folder_with_an_old_record_is_skipped_with_the_new_keys():
    skipped = _skipped(OLD_PREDICT)
    assert skipped["status"] == "skipped" and skipped["seconds"] == 0.0
    assert skipped["class_shares"] == {"normal": 0.7, "tumour": 0.3}
    assert "class_fractions" not in skipped
    SlideRecord(**skipped)  # what the executor builds from it


def test_report_keeps_its_fraction_columns_and_merges_an_old_report(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"records": [OLD_PREDICT, OLD_QC]}))
    new = SlideRecord(slide="c", path="/slides/c.svs", tiles=4,
                      class_shares={"normal": 0.25, "tumour": 0.75})
    csv_path, json_path = write_report([new], tmp_path)
    rows = {r["slide"]: r for r in csv.DictReader(csv_path.open())}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["fraction_tumour"] == "0.3000"
    assert rows["b"]["fraction_tissue"] == "0.4000"
    assert rows["c"]["fraction_tumour"] == "0.7500" and rows["c"]["fraction_tissue"] == "0.0000"
    records = json.loads(json_path.read_text())["records"]
    assert [r["class_shares"] for r in records][2] == {"normal": 0.25, "tumour": 0.75}
    assert records[1]["area_fractions"] == {"tissue": 0.4, "pen": 0.01}
