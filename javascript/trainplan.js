// sd_trainplan: the Train Planner tab inside AUTOMATIC1111 / Forge.
// 1. A training run shows in the WebUI's own progress bar and live preview, as its Train tab does
//    (requestProgress): when a Start button of the tab is clicked, the run's task id is read from
//    GET /sd_trainplan/train (the server gives each run its id when it joins the WebUI's queue).
// 2. "Apply to the WebUI's Train tab" writes the plan's learning rate (or schedule string), batch
//    size, gradient accumulation and max steps into the built-in Textual Inversion fields.
(function() {
    var lastTask = null;

    function app() {
        return gradioApp();
    }

    function statusUrl() {
        return './sd_trainplan/train';
    }

    function readStatus(handler) {
        fetch(statusUrl(), {cache: 'no-store'}).then(function(r) {
            return r.ok ? r.json() : null;
        }).then(function(s) {
            if (s) handler(s);
        }).catch(function() {});
    }

    function attachProgress(id) {
        var container = app().querySelector('#stp_webui_progress');
        var preview = app().querySelector('#stp_webui_preview');
        var info = app().querySelector('#stp_webui_textinfo');
        if (!container || typeof requestProgress !== 'function') return;
        lastTask = id;
        requestProgress(id, container, preview, function() {
            readStatus(function(s) {
                if (info && s.message) info.textContent = s.message;
            });
        }, function(progress) {
            if (info && progress.textinfo) info.innerHTML = progress.textinfo;
        });
    }

    // After a Start click: wait (up to 20 s) for a run with a new task id, then follow it.
    function watchForRun() {
        var tries = 0;
        var before = lastTask;
        function poll() {
            readStatus(function(s) {
                if (s.task_id && s.task_id !== before && (s.state === 'queued' || s.state === 'running')) {
                    attachProgress(s.task_id);
                } else if (tries++ < 80) {
                    setTimeout(poll, 250);
                }
            });
        }
        setTimeout(poll, 100);
    }

    function isStartButton(el) {
        if (!el || !el.closest) return null;
        var b = el.closest('button');
        if (!b || !b.id || !app().querySelector('#tab_sd_trainplan') || !app().querySelector('#tab_sd_trainplan').contains(b)) return null;
        return /^stp_.*(start|train|resume|lr_range)$/.test(b.id) && b.id !== 'stp_apply_webui_train' ? b : null;
    }

    // --- Apply to the WebUI's Train tab -------------------------------------------------------
    function planValue(id) {
        var td = app().querySelector('#stp_tables tr[data-quantity="' + id + '"] td.value');
        if (!td) return null;
        var num = td.querySelector('.stp-num');
        var text = (num || td).textContent.trim();
        return text && text !== '—' ? text : null;
    }

    function pageInput(id) {
        var el = app().querySelector('#' + id + ' input, #' + id + ' textarea');
        return el ? el.value.trim() : null;
    }

    function setField(id, value) {
        var el = app().querySelector('#' + id + ' input, #' + id + ' textarea');
        if (!el || value === null || value === '') return false;
        el.value = value;
        updateInput(el);
        return true;
    }

    window.stpApplyToWebuiTrainTab = function() {
        var values = {
            train_embedding_learn_rate: planValue('a1111_learning_rate'),
            train_batch_size: pageInput('stp_batch_size') || '1',
            train_gradient_step: pageInput('stp_grad_accum') || '1',
            train_steps: planValue('a1111_max_steps')
        };
        var missing = [];
        Object.keys(values).forEach(function(id) {
            if (!setField(id, values[id])) missing.push(id);
        });
        var note = app().querySelector('#stp_webui_textinfo');
        if (note) {
            note.textContent = missing.length ?
                'Not written: ' + missing.join(', ') + ' (no plan value yet, or the Train tab is not there).' :
                'Written to Train > Train: learning rate ' + values.train_embedding_learn_rate + ', batch size ' +
                values.train_batch_size + ', gradient accumulation ' + values.train_gradient_step + ', max steps ' +
                values.train_steps + '.';
        }
        return values;
    };

    onUiLoaded(function() {
        readStatus(function(s) {
            lastTask = s.task_id || null;
            if (s.task_id && (s.state === 'queued' || s.state === 'running')) attachProgress(s.task_id);  // a reload mid-run
        });
        app().addEventListener('click', function(e) {
            var t = e.target;
            if (t && t.closest && t.closest('#stp_apply_webui_train')) {
                window.stpApplyToWebuiTrainTab();
            } else if (isStartButton(t)) {
                watchForRun();
            }
        }, true);
    });
})();
