// The benchmark text, shared by `benches/detect.rs` and `examples/scan_loop.rs` (included).

/// A realistic mix: prose, code, a table, an e-mail, a phone number, some non-ASCII text.
const PARAGRAPHS: &[&str] = &[
    "Could you help me plan a three-day trip to Lisbon in early spring? I would like to see the \
     old town, eat good seafood and maybe take a day trip to Sintra. My budget is around 900 EUR.",
    "Here is the function that fails:\n```python\ndef load(path):\n    with open(path) as f:\n        \
     return json.load(f)\n```\nIt raises a KeyError when the config has no 'timeout' field.",
    "| Quarter | Revenue | Growth |\n| Q1 | 1.2M | 4% |\n| Q2 | 1.4M | 16% |\n| Q3 | 1.3M | -7% |",
    "Please reply to maria.gonzalez@example.com or call me at +1-415-555-0134 before Friday; the \
     meeting moved to room 4.21 in building B.",
    "Résumé: l'équipe a livré la nouvelle version à temps. Nächste Woche folgt die Überprüfung. \
     下一步是测试。",
    "The customer said the dashboard was slow after the upgrade to version 3.2.1; the logs show \
     GC pauses of 300 ms every minute. What settings should we tune first?",
    "Summarise the following article in five bullet points for a non-technical audience, keeping \
     the tone neutral and avoiding jargon where you can.",
];

fn chat_text(size: usize) -> String {
    let mut s = String::with_capacity(size + 512);
    let mut i = 0;
    while s.len() < size {
        s.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        s.push_str("\n\n");
        i += 1;
    }
    let mut cut = size.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// One request in one language (`fr`, `ru`, `zh`; anything else gives English), repeated to
/// `size` bytes: what scanning costs for prompts in the scripts the general path folds.
fn language_text(lang: &str, size: usize) -> String {
    let paragraph = match lang {
        "fr" => {
            "Bonjour, pourriez-vous m'aider à préparer un voyage de trois jours à Lisbonne au \
             début du printemps ? J'aimerais voir la vieille ville, manger de bons fruits de mer \
             et peut-être faire une excursion à Sintra. Mon budget est d'environ 900 euros."
        }
        "ru" => {
            "Здравствуйте, не могли бы вы помочь мне спланировать трёхдневную поездку в Лиссабон \
             ранней весной? Я хотел бы посмотреть старый город, поесть хороших морепродуктов и, \
             может быть, съездить на день в Синтру. Мой бюджет около 900 евро."
        }
        "zh" => {
            "你好，你能帮我计划一下早春去里斯本的三天旅行吗？我想看看老城区，吃点好的海鲜，\
             也许还可以去辛特拉一日游。我的预算大约是九百欧元。"
        }
        _ => PARAGRAPHS[0],
    };
    let mut s = String::with_capacity(size + 512);
    while s.len() < size {
        s.push_str(paragraph);
        s.push_str("\n\n");
    }
    let mut cut = size.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}
