// sd_trainplan: the Train Planner tab inside AUTOMATIC1111 / Forge.
// 1. A training run shows in the WebUI's own progress bar and live preview, as its Train tab does
//    (requestProgress): the tab's progress block carries the run's WebUI task id (data-task, given
//    when the run joins the WebUI's queue); whenever a running one appears that is not followed yet
//    (after Start, Resume, the LR range test, or a page opened mid-run), it is followed. Read from
//    the page itself: the page works whatever access rules guard the HTTP API (--api-auth).
// 2. "Apply to the WebUI's Train tab" writes the plan's learning rate (or schedule string), batch
//    size, gradient accumulation and max steps into the built-in Textual Inversion fields.
(function() {
    var followed = null;

    function app() {
        return gradioApp();
    }

    function runningTask() {
        var boxes = app().querySelectorAll('#tab_sd_trainplan .stp-progress[data-state="running"][data-task]');
        for (var i = 0; i < boxes.length; i++) {
            if (boxes[i].getAttribute('data-task')) return boxes[i].getAttribute('data-task');
        }
        return null;
    }

    function attachProgress(id) {
        var container = app().querySelector('#stp_webui_progress');
        var preview = app().querySelector('#stp_webui_preview');
        var info = app().querySelector('#stp_webui_textinfo');
        if (!container || typeof requestProgress !== 'function') return;
        followed = id;
        requestProgress(id, container, preview, function() {
            var result = app().querySelector('#tab_sd_trainplan #stp_train_result .stp-result');
            if (info && result) info.textContent = result.textContent;
        }, function(progress) {
            if (info && progress.textinfo) info.innerHTML = progress.textinfo;
        });
    }

    function followNewRuns() {
        var id = runningTask();
        if (id && id !== followed) attachProgress(id);
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
        setInterval(followNewRuns, 500);
        app().addEventListener('click', function(e) {
            var t = e.target;
            if (t && t.closest && t.closest('#stp_apply_webui_train')) window.stpApplyToWebuiTrainTab();
        }, true);
    });
})();
