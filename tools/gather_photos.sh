#!/bin/sh
# Gather the training photographs of the shipped weights into one folder (the model card's
# `photos/`), from the shared data and the package registries:
#   tools/gather_photos.sh SHARED_PHOTOS_DIR DEST_DIR
# - SHARED_PHOTOS_DIR: ../shared/data/photos (mate_*, plasma_*; GPL-2+)
# - scikit-image 0.26.0's wheel (PyPI): astronaut, chelsea, coffee, rocket (public domain / CC0)
# - Debian bookworm's lomiri-wallpapers-16.04 and -20.04 (20.04.0-2): 14 photographs
#   (CC-BY-4.0, CC-BY-SA-3.0/4.0, CC0-1.0; authors in the model card and the packages' copyright files)
# - in DEST_DIR/more/ (added for v6; the held-out split counts each folder apart, so these do not
#   move the six held out above):
#   Debian bookworm's lxqt-themes 1.2.0-1: 10 wallpapers that are photographs (CC-BY-SA-3.0,
#   stefonarch and the LXQt team; the package's wallpapers/License);
#   Debian bookworm's kphotoalbum 5.9.1-1: 23 demo photographs (GPL-2+, Jesper K. Pedersen);
#   scikit-learn 1.9.1's wheel (PyPI): china, flower (CC-BY-2.0, danielbuechele and vultilion on Flickr);
#   matplotlib 3.11.2's wheel (PyPI): grace_hopper (public domain, U.S. Navy)
# Names are prefixed by source; the synthetic dataset holds out every seventh file from the fourth
# in name order within each folder, so these names fix the held-out sets (6 photographs in
# DEST_DIR, 5 in DEST_DIR/more) in an empty DEST_DIR; other files there would move the split.
# Needs pip and apt-get (network or a local mirror); run once, before training. camnet itself never downloads.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SHARED_PHOTOS_DIR DEST_DIR" >&2; exit 2; }
src=$1
dest=$2
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp "$src"/*.jpg "$dest"/

python3 -m pip download --quiet --no-deps --dest "$work" scikit-image==0.26.0
python3 - "$work" "$dest" <<'EOF'
import pathlib, sys, zipfile
work, dest = map(pathlib.Path, sys.argv[1:])
wheel = zipfile.ZipFile(next(work.glob("scikit_image-*.whl")))
for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
    (dest / f"skimage_{name}").write_bytes(wheel.read(f"skimage/data/{name}"))
EOF

(cd "$work" && apt-get download lomiri-wallpapers-16.04=20.04.0-2 lomiri-wallpapers-20.04=20.04.0-2 >/dev/null)
for deb in "$work"/lomiri-wallpapers-*.deb; do
    dpkg-deb -x "$deb" "$work/x"
done
for f in "$work"/x/usr/share/backgrounds/*.jpg; do
    name=$(basename "$f")
    case $name in
        # not photographs: a texture (analogpattern), renders (umang, Fossa, Infinite-Sea, Painting-Colors)
        analogpattern_* | umang_* | Fossa_* | Infinite-Sea_* | Painting-Colors_*) continue ;;
    esac
    cp "$f" "$dest/ubports_$name"
done
more=$dest/more
mkdir -p "$more"
python3 -m pip download --quiet --no-deps --dest "$work" scikit-learn==1.9.1 matplotlib==3.11.2
python3 - "$work" "$more" <<'EOF'
import pathlib, sys, zipfile
work, more = map(pathlib.Path, sys.argv[1:])
for wheel, names, prefix in (
    ("scikit_learn-*.whl", ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"), "sklearn"),
    ("matplotlib-*.whl", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",), "matplotlib"),
):
    archive = zipfile.ZipFile(next(work.glob(wheel)))
    for name in names:
        (more / f"{prefix}_{pathlib.PurePath(name).name}").write_bytes(archive.read(name))
EOF
(cd "$work" && apt-get download lxqt-themes=1.2.0-1 kphotoalbum=5.9.1-1 >/dev/null)
dpkg-deb -x "$work"/lxqt-themes_*.deb "$work/lxqt"
dpkg-deb -x "$work"/kphotoalbum_*.deb "$work/kpa"
# the wallpapers that are photographs (the others are renders and logos)
for name in after-the-rain.jpg appleflower.png beam.png butterfly.png Butterfly-Kenneth-Wimer.jpg cloud.png \
        drop.png flowers.png fog.jpg this-is-not-windows.jpg; do
    cp "$work/lxqt/usr/share/lxqt/wallpapers/$name" "$more/lxqt_$name"
done
for f in "$work"/kpa/usr/share/kphotoalbum/demo/*.jpg; do
    name=$(basename "$f")
    [ "$name" = qt-logo.jpg ] && continue
    cp "$f" "$more/kphotoalbum_$name"
done
echo "$(ls "$dest" | grep -vc '^more$') photographs in $dest, $(ls "$more" | wc -l) in $more"
