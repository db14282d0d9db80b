"""Sample documents for demos and tests: small, real, distinct PDF invoices (no external files)."""

from __future__ import annotations

from pathlib import Path

#: A small image body with the PNG signature: an IMAGE input the emulator accepts (2 KiB, distinct bytes).
SAMPLE_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def make_sample_invoices(folder: Path, count: int = 5) -> list[Path]:
    """Small but real PDF files, one invoice each, so the emulator has distinct documents to read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        text = f"INVOICE ACME-{i:04d}  Total {i * 1234.5:.2f} JPY"
        stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        body, offsets = b"%PDF-1.4\n", []
        for n, obj in enumerate(objects, 1):
            offsets.append(len(body))
            body += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
        xref = len(body)
        body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        body += b"".join(b"%010d 00000 n \n" % o for o in offsets)
        body += b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
        path = folder / f"acme_invoice_{i:03d}.pdf"
        path.write_bytes(body)
        paths.append(path)
    return paths
