"""vm.inspect() against real QEMU, plus InspectNode/inspect_diff on built trees."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import petri_nb
from petri_nb import InspectNode, inspect_diff


def test_inspect_has_machine_cpus_and_frame_columns(vm: petri_nb.Vm):
    node = vm.inspect()
    assert isinstance(node, InspectNode)
    assert {"machine", "cpus", "status", "memory", "block", "pci"} <= set(node.children)
    assert "kvm" not in node.children  # TCG: query-stats has nothing to say
    assert node["machine/type"].value == "pc-q35-7.2-machine"
    assert node["cpus/0/cpu-index"].value == 0
    assert node["status/status"].value == "running"
    assert node["memory/base-memory"].value == vm.guest.memory_mib * 1024 * 1024
    frame = node.to_frame()
    assert list(frame.columns) == ["path", "name", "value", "type"]
    frame["value"] = frame["value"].fillna("")  # JSON null leaves
    assert (frame["path"].str.split("/").str[-1] == frame["name"]).all()
    assert frame["path"].is_unique
    # QOM: the CPU object and the pvpanic device are in the tree, with QOM property types
    is_type = frame["path"].str.match(r"machine/unattached/device\[\d+\]/type$")
    cpu_types = frame[is_type & (frame["value"] == "qemu64-x86_64-cpu")]
    assert len(cpu_types) == 1
    assert (frame["value"] == "pvpanic").any()
    assert frame.set_index("path").loc["machine/type", "type"] == "string"
    row = vm.timeline().query("source == 'inspect'").iloc[-1]
    data = json.loads(row["data"])
    assert data["values"] == len(frame) and data["round_trips"] > 100


def test_diff_after_pause_shows_the_run_state_change(vm: petri_nb.Vm):
    before = vm.inspect("status")
    vm.pause()
    after = vm.inspect("status")
    diff = inspect_diff(before, after).set_index("path")
    assert diff.loc["status/status", "before"] == "running"
    assert diff.loc["status/status", "after"] == "paused"
    assert diff.loc["status/running", "change"] == "changed"
    assert set(diff.index) == {"status/status", "status/running"}


def test_path_filter_inspects_only_that_subtree_with_full_paths(vm: petri_nb.Vm):
    full_rows = vm.aio._timeline.snapshot_count
    sub = vm.inspect("machine/peripheral-anon")
    assert list(sub.children) == ["machine"]
    assert list(sub["machine"].children) == ["peripheral-anon"]
    frame = sub.to_frame()
    assert frame["path"].str.startswith("machine/peripheral-anon/").all()
    assert set(frame.loc[frame["name"] == "type", "value"]) >= {"VGA", "pvpanic"}
    data = json.loads(vm.timeline().query("source == 'inspect'").iloc[-1]["data"])
    assert data["path"] == "machine/peripheral-anon" and data["round_trips"] < 400
    assert vm.aio._timeline.snapshot_count == full_rows + 1


def test_bad_inspect_paths_are_clear_errors(vm: petri_nb.Vm):
    with pytest.raises(petri_nb.PetriError, match="no top-level node 'nope'"):
        vm.inspect("nope")
    with pytest.raises(petri_nb.PetriError, match="no object at /machine/missing"):
        vm.inspect("machine/missing")
    with pytest.raises(petri_nb.PetriError, match="no 'zzz' under 'status'"):
        vm.inspect("status/zzz")
    assert vm.status() == "running"


def test_node_lookup_frame_and_diff_on_a_built_tree():
    a = InspectNode.from_json("", {"cpus": [{"pc": 1}], "name": "<script>x</script>", "gone": True})
    b = InspectNode.from_json("", {"cpus": [{"pc": 2}], "name": "<script>x</script>", "new": None})
    assert a["cpus/0/pc"].value == 1 and a["/cpus/0/pc/"].path == "cpus/0/pc"
    assert "cpus/0" in a and "cpus/9" not in a
    with pytest.raises(KeyError, match="no 'x' under 'cpus'"):
        a["cpus/x"]
    diff = inspect_diff(a, b)
    assert diff["path"].tolist() == ["cpus/0/pc", "gone", "new"]
    assert diff["change"].tolist() == ["changed", "removed", "added"]
    assert diff.loc[0, "before"] == "1" and diff.loc[0, "after"] == "2"
    assert diff.loc[1, "before"] == "true" and pd.isna(diff.loc[1, "after"])
    assert diff.loc[2, "type"] == "null"
    assert "<script>" not in a._repr_html_() and "&lt;script&gt;x" in a._repr_html_()
    with pytest.raises(petri_nb.PetriError, match="InspectNode"):
        inspect_diff(a, 42)


def test_diff_after_a_pcie_hot_plug_shows_the_new_device():
    with petri_nb.launch("tmk", extra_args=("-device", "pcie-root-port,id=rp0,chassis=1,bus=pcie.0")) as vm:
        before = vm.inspect("pci")
        vm.add_pcie_device("virtio-blk", size_mib=8)
        diff = inspect_diff(before, vm.inspect("pci"))
    added = diff[diff["change"] == "added"]
    qdev = added[added["path"].str.endswith("/qdev_id")]
    assert len(qdev) == 1
    device = qdev["path"].iloc[0].rsplit("/", 1)[0]
    values = added.set_index("path")["after"]
    assert values[f"{device}/id/vendor"] == str(0x1AF4)  # virtio
    assert values[f"{device}/class_info/desc"] == "SCSI controller"


@pytest.mark.slow  # KVM start-up here takes seconds (nested virtualisation)
@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs /dev/kvm")
def test_kvm_statistics_are_in_the_tree_under_kvm():
    with petri_nb.launch("tmk", accel="kvm") as vm:
        node = vm.inspect("kvm")
        assert list(node.children) == ["kvm"]
        stats = node["kvm"].to_frame()
        assert (stats["path"].str.startswith("kvm/vm/")).any()
        assert node["kvm/vcpu/0/exits"].type == "int"
