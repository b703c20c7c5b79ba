"""Which mount changes matter: parsing /proc/self/mountinfo and matching mount points to watched directories."""

from __future__ import annotations

from snackwatch.mounts import parse_mountinfo, under

MOUNTINFO = """\
22 1 0:21 / / rw,relatime - ext4 /dev/root rw
36 22 0:30 / /srv/with\\040space rw,noatime master:1 - tmpfs tmpfs rw,size=1024k
37 22 0:31 / /srv/pantry ro,relatime - tmpfs tmpfs ro
"""


def test_mountinfo_lines_give_the_unescaped_mount_point_and_options() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts["36"] == ("/srv/with space", "rw,noatime rw,size=1024k")
    assert mounts["37"][0] == "/srv/pantry"


def test_a_mount_matters_to_the_directories_it_covers_or_sits_above() -> None:
    directories = sorted(["/srv/pantry", "/srv/pantry/drinks", "/srv/pantry2", "/home/me/pantry", "/srv/pantry-x"])
    assert under({"/srv/pantry"}, directories) == {"/srv/pantry", "/srv/pantry/drinks"}
    assert under({"/srv"}, directories) == {"/srv/pantry", "/srv/pantry/drinks", "/srv/pantry2", "/srv/pantry-x"}
    assert under({"/mnt/usb"}, directories) == set()
    assert under({"/"}, directories) == set(directories)
