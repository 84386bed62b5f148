"""The Token field in the real AUTOMATIC1111 v1.10.1 (issue 17, item 5): a token that is already one of
the WebUI's loaded embeddings, or an emptied field, is named beside the field when Start is pressed,
and nothing starts: no run, no run folder (before, an emptied field trained "sks", and an embedding's
name failed mid-run with a traceback, leaving an empty run folder)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from webui_page import TAB, fill_trainer, job_box, open_tab

pytestmark = [pytest.mark.hosts, pytest.mark.browser]


def test_an_embeddings_name_or_an_empty_token_is_refused_beside_the_field(a1111, browser, shapes_dir):
    # an embedding made with the WebUI's own API: in its embeddings folder and loaded at once
    log_from = len(a1111.log())
    (a1111.data / "embeddings").mkdir(exist_ok=True)
    a1111.api("POST", "/sdapi/v1/create/embedding", {"name": "stptaken", "num_vectors_per_token": 1,
                                                     "overwrite_old": True, "init_text": "*"})
    assert "stptaken" in a1111.api("GET", "/sdapi/v1/embeddings")["loaded"]
    runs = a1111.data / "outputs" / "sd_trainplan"
    existing = set(runs.iterdir()) if runs.exists() else set()
    page = open_tab(browser, a1111)
    message = page.locator(f"{TAB} #stp_train_token_msg .stp-msg").first
    try:
        before = job_box(page).get_attribute("data-job")
        common = dict(data=shapes_dir, steps=4, resolution=64, batch_size=2, name="token-run", val_split=0)
        for method, token, says in (("ti", "stptaken", "is already a loaded embedding"),
                                    ("lora", "stptaken", "puts that embedding's vectors in its place"),
                                    ("dreambooth", "", "is empty")):
            fill_trainer(page, method, token=token, **common)
            page.locator(f"{TAB} #stp_train_start").first.click()
            expect(message).to_contain_text(says)
            if token:
                expect(message).to_contain_text("stptaken.pt")  # the file the WebUI loaded it from
            expect(page.locator(f"{TAB} #stp_train_status").first).to_contain_text("nothing was started")
        assert job_box(page).get_attribute("data-job") == before  # nothing ran
        assert (set(runs.iterdir()) if runs.exists() else set()) == existing  # not even a run folder
        assert a1111.tracebacks(log_from) == []
    finally:
        page.close()
        (a1111.data / "embeddings" / "stptaken.pt").unlink(missing_ok=True)
        a1111.api("POST", "/sdapi/v1/refresh-embeddings")
