"""Rewrite lm_eval's wheel without its ~2,000 built-in task configs (lm_eval/tasks/<family>/, 5.0 MB of 9.1 MB
compressed): `train eval` builds TaskManager(include_path=<ours>, include_defaults=False), so it never reads
them. The task machinery (lm_eval/tasks/*.py) stays; RECORD is regenerated so pip installs it as usual."""
import base64
import hashlib
import sys
import zipfile
from pathlib import Path

src = Path(sys.argv[1])
tmp = src.with_suffix(".tmp")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
    rows = []
    for info in zin.infolist():
        name = info.filename
        if name == record_name or (name.startswith("lm_eval/tasks/") and name.count("/") > 2):
            continue
        data = zin.read(name)
        zout.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
    rows.append(f"{record_name},,")
    zout.writestr(record_name, "\n".join(rows) + "\n")
tmp.replace(src)
print(f"{src.name}: {src.stat().st_size / 1e6:.1f} MB")
