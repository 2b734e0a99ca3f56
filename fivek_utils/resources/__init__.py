"""Files shipped with the kit."""

from pathlib import Path

# The official Zalo 5K training label file (labels only, 4,175 rows), as participants'
# public repositories commit it; see ../shared/data/zalo/README.md in the project's history.
REAL_LABELS_FILE = Path(__file__).with_name("zalo_train_meta.csv")
# photos/: two real, public-domain photos with one face each (core.config.PHOTOS_DIR)
