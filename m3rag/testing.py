"""Small random checkpoints in the exact BAAI/bge-m3 layout, for tests and benchmarks without the hub.

`build_checkpoint(path)` writes everything a bge-m3 snapshot holds (config, encoder weights as
`model.safetensors`, the ColBERT and sparse heads, and an XLM-R sentencepiece tokenizer) with random
but deterministic weights. The tokenizer is trained here, with the `sentencepiece` library, on
`SAMPLE_TEXTS`, a small multilingual corpus written for this project. The init is scaled so that
different texts get clearly different dense vectors and the sparse head keeps a good share of tokens
(HF's default std 0.02 makes a random XLM-R nearly input-blind); `checkpoint_quality` measures that.

Everything is written from plain data (JSON, safetensors, `torch.save`), not through transformers'
save methods, so the files have bge-m3's shape whatever transformers version is installed.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal, TypedDict

import sentencepiece
import torch
from safetensors.torch import save_file

__all__ = [
    "CHECKPOINT_FILES",
    "MAX_POSITION_EMBEDDINGS",
    "MODEL_MAX_LENGTH",
    "PRESETS",
    "SAMPLE_TEXTS",
    "SAMPLE_TEXTS_BY_LANGUAGE",
    "CheckpointPreset",
    "CheckpointQuality",
    "build_checkpoint",
    "checkpoint_quality",
]

# A small multilingual corpus written for this project (no dataset text): the tokenizer's training data,
# the texts `checkpoint_quality` encodes, and sample inputs for tests and benchmarks. All texts are
# distinct and none ends in whitespace.
SAMPLE_TEXTS_BY_LANGUAGE: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        # English
        "en": (
            "The ferry to the island leaves at seven, but the wind often delays it.",
            "My grandmother kept a jar of buttons that we sorted by colour on rainy afternoons.",
            "Solar panels on the school roof now cover most of its electricity needs.",
            "He repaired the old bicycle with parts from three different shops.",
            "The museum reopened after the flood with a new exhibit on river trade.",
            "A sudden frost ruined the apricot blossoms in the valley orchards.",
            "Please send the signed contract before the end of the quarter.",
            "The choir rehearsed in the empty station because the hall was being painted.",
            "Researchers tagged forty turtles to follow their migration along the coast.",
            "She learned to bake bread during the long winter and never stopped.",
            "Traffic on the northern bridge will be reduced to one lane next week.",
            "The library lends telescopes as well as books and board games.",
            "Our team missed the deadline because the test server kept crashing.",
            "A quiet street market sells honey, cheese and hand-carved spoons.",
            "The novel follows two sisters who inherit a failing lighthouse.",
            "Drink plenty of water and rest if the fever returns.",
            "The committee voted to plant a hundred oak trees along the canal.",
            "Fresh snow covered the mountain pass, so the hikers turned back.",
            "The startup sells compostable packaging made from mushroom roots.",
            "How many kilometres is it from the harbour to the old castle?",
            "The violinist tuned her instrument while the audience found their seats.",
            "Heavy rain is expected tonight, with strong gusts near the shore.",
            "The recipe calls for two cups of flour and a pinch of salt.",
            "Children built a raft from plastic bottles for the science fair.",
            "The bank will close its branch in the village at the end of May.",
        ),
        # French
        "fr": (
            "Le marché du samedi attire des producteurs de toute la région.",
            "Nous avons raté le dernier train et dormi dans une petite auberge.",
            "La bibliothèque municipale organise un atelier d'écriture chaque mardi.",
            "Les vendanges ont commencé plus tôt cette année à cause de la chaleur.",
            "Mon voisin répare des horloges anciennes dans son garage.",
            "Le musée présente une exposition sur les cartes marines du dix-huitième siècle.",
            "Il faut réserver une table, car le restaurant est souvent complet.",
            "Les élèves ont planté un potager derrière l'école.",
            "La tempête a arraché plusieurs arbres le long de la route côtière.",
            "Elle apprend le violoncelle depuis qu'elle a pris sa retraite.",
            "Le pont sera fermé pendant deux semaines pour des travaux.",
            "Ce fromage de chèvre se marie très bien avec du miel de lavande.",
            "Les chercheurs étudient la migration des cigognes au-dessus des Alpes.",
            "Pouvez-vous m'indiquer le chemin de la gare, s'il vous plaît ?",
            "Le festival de cinéma en plein air commence à la tombée de la nuit.",
            "Une panne d'électricité a paralysé le quartier pendant trois heures.",
            "Le boulanger prépare les croissants avant quatre heures du matin.",
            "Les randonneurs ont aperçu un chamois près du refuge.",
            "La nouvelle ligne de tramway reliera l'université à l'hôpital.",
            "Nous avons peint la cuisine en jaune pâle et les volets en bleu.",
            "Le roman raconte l'histoire d'un facteur qui collectionne les lettres perdues.",
            "Les prix de l'énergie ont fortement augmenté cet hiver.",
            "Mon frère a traversé la Bretagne à vélo en dix jours.",
            "Le conseil municipal a voté la création d'une piste cyclable.",
            "Les enfants ont construit une cabane au bord de la rivière.",
        ),
        # German
        "de": (
            "Der Zug nach Hamburg hat heute wieder zwanzig Minuten Verspätung.",
            "Meine Tante züchtet seltene Tomatensorten in ihrem Gewächshaus.",
            "Die Stadtbibliothek bleibt wegen Renovierung bis Juli geschlossen.",
            "Im Herbst sammeln wir Pilze im Wald hinter dem Dorf.",
            "Das neue Schwimmbad hat ein Becken nur für Kinder.",
            "Der Handwerker hat das undichte Dach endlich repariert.",
            "Bitte schalten Sie Ihr Telefon während der Vorstellung aus.",
            "Die Forscher messen seit Jahren die Temperatur des Sees.",
            "Auf dem Weihnachtsmarkt gibt es gebrannte Mandeln und Glühwein.",
            "Er hat sich beim Fußballspielen den Knöchel verstaucht.",
            "Die Brücke über den Fluss wurde im neunzehnten Jahrhundert gebaut.",
            "Unsere Nachbarn haben einen alten Hund, der jeden Morgen bellt.",
            "Das Unternehmen plant eine Fabrik für Batterien im Osten des Landes.",
            "Wie spät ist es, und wann fährt der letzte Bus?",
            "Der Chor probt jeden Donnerstag im Gemeindesaal.",
            "Starker Schneefall hat mehrere Bergstraßen unpassierbar gemacht.",
            "Sie hat ihren Roman in einem kleinen Café in Leipzig geschrieben.",
            "Die Schüler bauen einen Roboter für den Wettbewerb.",
            "Frisches Brot vom Bäcker schmeckt am Sonntag besonders gut.",
            "Der Fahrradweg entlang des Kanals ist ideal für Familien.",
            "Wegen des Streiks fallen morgen viele Flüge aus.",
            "Im Museum kann man eine alte Dampfmaschine in Betrieb sehen.",
            "Mein Großvater erzählt gern von seiner Zeit als Seemann.",
            "Die Gemeinde hat beschlossen, hundert Obstbäume zu pflanzen.",
            "Das Konzert im Park wurde wegen Gewitter abgesagt.",
        ),
        # Spanish
        "es": (
            "El mercado de abastos abre temprano y cierra a mediodía.",
            "Mi abuela prepara una tortilla de patatas que nadie puede igualar.",
            "La biblioteca del barrio presta libros y también instrumentos musicales.",
            "Este verano hizo tanto calor que el río casi se secó.",
            "Los pescadores salieron al amanecer a pesar de la niebla.",
            "El museo de arte moderno ofrece entrada gratuita los domingos.",
            "¿Sabes a qué hora sale el autobús hacia la costa?",
            "Los estudiantes organizaron una feria para recaudar fondos.",
            "La tormenta dejó sin luz a varios pueblos de la sierra.",
            "Mi hermano aprendió a tocar la guitarra escuchando discos viejos.",
            "El ayuntamiento construirá un parque junto a la estación.",
            "Las golondrinas regresan cada primavera al mismo tejado.",
            "La empresa busca ingenieros con experiencia en energía eólica.",
            "Comimos paella en una terraza frente al puerto.",
            "El tren nocturno atraviesa la meseta en menos de seis horas.",
            "Los científicos descubrieron una nueva especie de rana en la selva.",
            "Por favor, apaga las luces cuando salgas de la oficina.",
            "La novela narra la vida de una maestra rural en los años cincuenta.",
            "El equipo local ganó el campeonato tras una temporada difícil.",
            "Plantamos tomates, pimientos y albahaca en el huerto.",
            "El puente antiguo fue restaurado con piedra de la misma cantera.",
            "Mañana habrá huelga de transporte en toda la ciudad.",
            "La panadería de la esquina vende pan integral recién horneado.",
            "Los niños construyeron un castillo de arena enorme en la playa.",
            "El festival de jazz reúne a músicos de todo el continente.",
        ),
        # Chinese (simplified)
        "zh": (
            "今天早上下了一场大雨，街上的人都打着伞。",
            "我的奶奶每天早上在公园里打太极拳。",
            "这家小面馆的牛肉面非常有名，常常要排队。",
            "图书馆周末开放到晚上九点。",
            "我们计划明年春天去云南旅行。",
            "他用旧木板做了一张新书桌。",
            "地铁新线路下个月开通，上班会方便很多。",
            "科学家在山区发现了一种罕见的兰花。",
            "请把会议资料在周五之前发给我。",
            "秋天的时候，湖边的枫叶变成了红色。",
            "孩子们在学校的花园里种了向日葵。",
            "这本小说讲述了一个渔村家庭三代人的故事。",
            "明天有大风，出海的船只需要注意安全。",
            "我哥哥在一家生产电动汽车的公司工作。",
            "夜市上有卖烤红薯、糖葫芦和豆浆的小摊。",
            "博物馆正在展出古代丝绸和瓷器。",
            "医生建议他多喝水，早点休息。",
            "村里修了一座新桥，过河不再需要坐船了。",
            "她每天晚上练习钢琴一个小时。",
            "这座城市的自行车道越来越多了。",
            "火车站离这里远吗？走路需要多长时间？",
            "我们在山顶看到了美丽的日出。",
            "这家公司开发了一款帮助老人用手机的软件。",
            "端午节的时候，家家户户都包粽子。",
            "雪下得很大，学校决定停课一天。",
        ),
        # Japanese
        "ja": (
            "駅前の本屋は夜十時まで開いています。",
            "祖父は毎朝、庭の盆栽に水をやります。",
            "台風の影響で、明日の飛行機はすべて欠航になりました。",
            "この町の商店街には古い和菓子屋があります。",
            "週末は友達と山に登って、頂上でおにぎりを食べました。",
            "新しい図書館には子ども向けの読書室があります。",
            "彼は自転車で日本一周の旅に出かけました。",
            "会議の資料を金曜日までに送ってください。",
            "秋になると、寺の庭のもみじが真っ赤になります。",
            "研究者たちは海の温度の変化を調べています。",
            "電車が遅れたので、学校に遅刻してしまいました。",
            "母はお正月のために毎年おせち料理を作ります。",
            "この川ではホタルが見られることで有名です。",
            "小さな喫茶店で、手作りのケーキを注文しました。",
            "駅までの道を教えていただけますか。",
            "市は公園に桜の木を百本植える計画を発表しました。",
            "雪が積もったので、子どもたちは雪だるまを作りました。",
            "その小説は、灯台守の家族の物語です。",
            "新しいアプリで、電気代を毎日確認できるようになりました。",
            "夏祭りでは、花火と盆踊りが楽しめます。",
            "彼女はピアノの先生として二十年働いています。",
            "博物館で江戸時代の地図を見ました。",
            "風邪をひいたときは、温かいお茶を飲んで早く寝ます。",
            "漁師たちは朝早くから港で網を直していました。",
            "来月から、バスの料金が少し上がります。",
        ),
        # Russian
        "ru": (
            "Утренний поезд до Казани отправляется в шесть часов.",
            "Моя бабушка каждое лето варит варенье из вишни.",
            "Городская библиотека открыла новый зал для детей.",
            "Из-за сильного ветра паром сегодня не ходит.",
            "Мы собирали грибы в лесу за рекой.",
            "Он починил старые часы, которые достались ему от деда.",
            "Музей показывает выставку старинных морских карт.",
            "Пожалуйста, отправьте документы до конца недели.",
            "Зимой озеро замерзает, и дети катаются на коньках.",
            "Учёные изучают, как меняется климат в тундре.",
            "На рынке продают мёд, сыр и свежий хлеб.",
            "Новый мост соединит два района города.",
            "Она учится играть на виолончели уже три года.",
            "Как пройти к вокзалу, подскажите, пожалуйста?",
            "Ночью ожидается снег и гололёд на дорогах.",
            "Школьники посадили яблони во дворе школы.",
            "Роман рассказывает о семье смотрителя маяка.",
            "Компания строит завод по производству аккумуляторов.",
            "После дождя в парке пахнет мокрой листвой.",
            "Концерт перенесли из-за плохой погоды.",
            "Мой брат проехал на велосипеде вдоль всей Волги.",
            "В кафе на углу готовят вкусные блины со сметаной.",
            "Автобусы будут ходить реже во время ремонта дороги.",
            "Туристы поднялись на гору, чтобы увидеть рассвет.",
            "Врач посоветовал больше гулять и меньше сидеть за компьютером.",
        ),
        # Arabic
        "ar": (
            "يفتح السوق الشعبي أبوابه في الصباح الباكر كل يوم جمعة.",
            "تعلمت جدتي الخياطة عندما كانت صغيرة.",
            "المكتبة العامة مفتوحة حتى الساعة التاسعة مساءً.",
            "هطلت أمطار غزيرة على المدينة طوال الليل.",
            "سافرنا بالقطار إلى الإسكندرية في عطلة الصيف.",
            "يعمل أخي مهندساً في شركة للطاقة الشمسية.",
            "من فضلك أرسل التقرير قبل نهاية الأسبوع.",
            "زرع الطلاب أشجار الزيتون في حديقة المدرسة.",
            "يعرض المتحف مجموعة من المخطوطات القديمة.",
            "أين تقع محطة الحافلات الأقرب من هنا؟",
            "اشترينا التمر والقهوة من متجر صغير في السوق القديم.",
            "تحكي الرواية قصة صياد يعيش على شاطئ البحر.",
            "أغلق الطريق الجبلي بسبب الثلوج.",
            "يدرس العلماء هجرة الطيور عبر الصحراء.",
            "افتتحت البلدية حديقة جديدة للأطفال.",
            "تتدرب أختي على العزف على العود كل مساء.",
            "ارتفعت أسعار الخبز في الشهر الماضي.",
            "شاهدنا غروب الشمس من فوق التلة.",
            "سيبدأ المهرجان الثقافي في الأسبوع القادم.",
            "نصح الطبيب المريض بشرب الكثير من الماء.",
            "بنى الأطفال قلعة من الرمل على الشاطئ.",
            "تأخرت الطائرة ساعتين بسبب العاصفة.",
            "يحب جدي أن يروي قصصاً عن أيام شبابه.",
            "تطور الشركة تطبيقاً لتعليم اللغات.",
            "الجسر الجديد يربط ضفتي النهر.",
        ),
        # code, numbers, identifiers, URLs
        "code": (
            "def add(a: int, b: int) -> int: return a + b",
            "for i in range(10): print(i * i)",
            "SELECT name, price FROM products WHERE price > 100 ORDER BY price DESC;",
            "const total = items.reduce((sum, x) => sum + x.qty, 0);",
            'git commit -m "fix off-by-one error in parser"',
            "if (x == NULL) { return -1; }",
            "The invoice total is 1,284.50 EUR, due on 2024-03-15.",
            "Call +1 555 0134 between 9:00 and 17:30.",
            "π ≈ 3.14159 and e ≈ 2.71828",
            "Version 2.4.1 fixes bug #3172 and improves startup by 18%.",
            "pip install numpy==1.26.4",
            '{"id": 42, "name": "widget", "tags": ["blue", "small"]}',
            "https://example.org/docs/api/v2/users?page=3",
            "x = np.linspace(0, 1, 101)",
            "CPU usage peaked at 97.3% at 03:14:07 UTC.",
            "SELECT COUNT(*) FROM orders GROUP BY customer_id;",
            "2 + 2 = 4, 10 / 4 = 2.5, 7 % 3 = 1",
            "class Node: def __init__(self, value): self.value = value",
            "while (n > 1) n = n % 2 ? 3 * n + 1 : n / 2;",
            "The flight UA 872 departs from gate B17 at 06:45.",
            "Temperature: -12.5 °C, humidity 81%, wind 24 km/h NE.",
            "let mut v: Vec<u32> = Vec::with_capacity(64);",
            "ERROR 404: page not found at /static/img/logo.png",
            "matrix[i][j] = matrix[i - 1][j] + matrix[i][j - 1]",
            "Order #A-77310 shipped on 12/03/2025, tracking 4KT80217795531.",
        ),
    }
)
"""Sample texts grouped by language ("en", "fr", "de", "es", "zh", "ja", "ru", "ar", "code"), 25 each."""

SAMPLE_TEXTS: Final[tuple[str, ...]] = tuple(text for texts in SAMPLE_TEXTS_BY_LANGUAGE.values() for text in texts)
"""All sample texts, in language order (225 distinct texts)."""

CHECKPOINT_FILES: Final[tuple[str, ...]] = (
    "config.json",
    "model.safetensors",
    "colbert_linear.pt",
    "sparse_linear.pt",
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
"""The files `build_checkpoint` writes: the names a BAAI/bge-m3 snapshot uses."""


@dataclasses.dataclass(frozen=True)
class CheckpointPreset:
    """Encoder shape of a preset (the vocabulary always comes from the built-in tokenizer)."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    num_hidden_layers: int


PRESETS: Final[Mapping[str, CheckpointPreset]] = MappingProxyType(
    {
        # Fast enough to build once per test session.
        "tiny": CheckpointPreset(hidden_size=64, num_attention_heads=4, intermediate_size=256, num_hidden_layers=2),
        # bge-m3's width (its per-layer cost) with 4 layers instead of 24, for benchmarks.
        "wide": CheckpointPreset(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, num_hidden_layers=4),
    }
)
"""Named encoder shapes for `build_checkpoint`."""

MAX_POSITION_EMBEDDINGS: Final[int] = 8194  # as bge-m3: 8192 tokens + the padding offset of 2
MODEL_MAX_LENGTH: Final[int] = 8192

# Sentencepiece pieces; the XLM-R vocabulary adds <pad> and <mask> (1502 ids). The corpus supports at
# most ~1600 pieces.
_SPM_VOCAB_SIZE: Final[int] = 1500

# Init scales. Matrices get std = gain / sqrt(fan_in), so presets of any width behave alike; embeddings
# and vectors get plain stds; every draw is uniform with that std (see `_random_tensor`). HF's default
# (std 0.02 everywhere) leaves attention uniform and the residual stream equal to each token's own
# embedding, so every text gets almost the same [CLS] vector (mean pairwise cosine 0.99998 on
# SAMPLE_TEXTS). These gains were chosen by measuring `checkpoint_quality` over many seeds of both presets.
_WORD_EMBEDDING_STD: Final[float] = 1.0
_POSITION_EMBEDDING_STD: Final[float] = 0.5  # smaller than words: positions are shared by every text
_TOKEN_TYPE_EMBEDDING_STD: Final[float] = 0.02  # added to every position: pure common mode
_QUERY_KEY_GAIN: Final[float] = 1.5  # attention logits of std ~ gain**2: content-dependent attention
_VALUE_OUTPUT_GAIN: Final[float] = 1.25  # attention output comparable to the residual
_FEED_FORWARD_GAIN: Final[float] = 1.25
_POOLER_GAIN: Final[float] = 1.0
_COLBERT_GAIN: Final[float] = 1.0
_SPARSE_GAIN: Final[float] = 0.25  # lexical weights mostly in [0, 1], as bge-m3's
_BIAS_STD: Final[float] = 0.02  # non-zero, so an implementation that drops a bias is caught
_LAYER_NORM_WEIGHT_STD: Final[float] = 0.05  # around 1
_LAYER_NORM_BIAS_STD: Final[float] = 0.02

_FAIRSEQ_SPECIALS: Final[tuple[str, ...]] = ("<s>", "<pad>", "</s>", "<unk>")
_MASK: Final[str] = "<mask>"


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def build_checkpoint(
    directory: str | os.PathLike[str],
    *,
    preset: Literal["tiny", "wide"] = "tiny",
    seed: int = 0,
    num_layers: int | None = None,
    exist_ok: bool = False,
) -> pathlib.Path:
    """Write a random checkpoint in the BAAI/bge-m3 layout into `directory` and return its absolute path.

    Writes exactly `CHECKPOINT_FILES`: an `xlm-roberta` `config.json` (8194 positions, so 8192-token
    inputs work), fp32 encoder weights in `model.safetensors` (keys without a `roberta.` prefix, pooler
    included), `colbert_linear.pt` ({weight [H, H], bias [H]}) and `sparse_linear.pt` ({weight [1, H],
    bias [1]}) as plain state dicts, and the XLM-R tokenizer files (ids 0 `<s>`, 1 `<pad>`, 2 `</s>`,
    3 `<unk>`, last `<mask>`; model_max_length 8192). The tokenizer is the same for every preset and
    seed; the weights depend only on (preset, num_layers, seed). The same arguments give byte-identical
    files with the same torch / sentencepiece / safetensors versions, also across CPU SIMD levels (the
    draws avoid SIMD-dependent math). A private `torch.Generator` is used: global RNG state is untouched.

    `num_layers` overrides the preset's layer count. The directory (and its parents) is created; if it
    exists and is not empty, `FileExistsError` is raised unless `exist_ok`, in which case the files
    above are replaced and other files are left alone. Files are staged in a sibling temporary
    directory and moved in at the end, so a failed build leaves no partial checkpoint behind.
    """
    shape = _resolve_shape(preset, num_layers)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    target = pathlib.Path(directory).expanduser().absolute()
    _check_target(target, exist_ok=exist_ok)
    target.parent.mkdir(parents=True, exist_ok=True)

    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        tokenizer_files = _tokenizer_files()
        for name, data in tokenizer_files.items():
            (staging / name).write_bytes(data)
        vocab_size = len(_fairseq_vocab())
        (staging / "config.json").write_bytes(_config_json(shape, vocab_size))
        _write_weights(staging, shape, vocab_size=vocab_size, seed=seed)

        target.mkdir(exist_ok=True)
        _check_target(target, exist_ok=exist_ok)  # someone may have filled it meanwhile
        for name in CHECKPOINT_FILES:
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class CheckpointQuality(TypedDict):
    """What `checkpoint_quality` measured (cosines are of L2-normalised [CLS] vectors, fp32)."""

    num_texts: int  # distinct texts encoded
    num_tokens: int  # real tokens other than <s> </s> <pad> <unk>
    mean_pairwise_cosine: float  # over all pairs of distinct texts; ~1.0 means input-blind
    max_pairwise_cosine: float
    mean_truncated_cosine: float  # text vs. its first 80 % (by characters): similar texts stay closer
    sparse_positive_share: float  # share of `num_tokens` with relu(sparse_linear(h)) > 0
    unk_share: float  # share of non-special tokens that are <unk> (0.0 on the built-in corpus)
    all_finite: bool  # no inf/NaN in hidden states, dense, sparse or ColBERT outputs


def checkpoint_quality(
    directory: str | os.PathLike[str],
    *,
    texts: Sequence[str] = SAMPLE_TEXTS,
    batch_size: int = 32,
) -> CheckpointQuality:
    """Measure how input-sensitive a checkpoint is, with a plain transformers forward plus the two heads.

    Loads `directory` with `AutoTokenizer` / `AutoModel` (fp32, CPU, eval) and the heads with
    `torch.load(weights_only=True)`, encodes the distinct `texts` (at least 2; truncated at 512 tokens)
    and returns `CheckpointQuality`. Works on any bge-m3-layout directory, not only built ones. Global
    RNG state is left as it was.
    """
    from transformers import AutoModel, AutoTokenizer  # heavy import, only needed here

    unique = list(dict.fromkeys(texts))
    if len(unique) < 2:
        raise ValueError("checkpoint_quality needs at least 2 distinct texts")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = pathlib.Path(directory)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).float().eval()
        heads = {
            name: torch.load(path / f"{name}.pt", map_location="cpu", weights_only=True)
            for name in ("colbert_linear", "sparse_linear")
        }
        specials = torch.tensor([tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id])
        unk_id = tokenizer.unk_token_id

        def encode(batch: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
            enc = tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].bool()
            sparse = torch.relu(hidden @ heads["sparse_linear"]["weight"].T + heads["sparse_linear"]["bias"])
            colbert = hidden[:, 1:] @ heads["colbert_linear"]["weight"].T + heads["colbert_linear"]["bias"]
            finite = bool(
                torch.isfinite(hidden[mask]).all()
                and torch.isfinite(sparse[mask]).all()
                and torch.isfinite(colbert[mask[:, 1:]]).all()
            )
            dense = torch.nn.functional.normalize(hidden[:, 0], dim=-1)
            finite = finite and bool(torch.isfinite(dense).all())
            return dense, enc["input_ids"][mask], sparse.squeeze(-1)[mask], finite

        dense_parts, id_parts, weight_parts, finite = [], [], [], True
        for batch in _batches(unique, batch_size):
            dense, ids, weights, ok = encode(batch)
            dense_parts.append(dense)
            id_parts.append(ids)
            weight_parts.append(weights)
            finite = finite and ok
        truncated_parts = []
        for batch in _batches([t[: max(1, int(len(t) * 0.8))] for t in unique], batch_size):
            dense, _, _, ok = encode(batch)
            truncated_parts.append(dense)
            finite = finite and ok

    dense = torch.cat(dense_parts)
    ids = torch.cat(id_parts)
    weights = torch.cat(weight_parts)
    cosine = dense @ dense.T
    upper = torch.triu_indices(len(unique), len(unique), offset=1)
    pairwise = cosine[upper[0], upper[1]]
    non_special = ~torch.isin(ids, specials)  # real tokens, <unk> included
    regular = non_special & (ids != unk_id)  # the tokens FlagEmbedding can give a lexical weight
    return CheckpointQuality(
        num_texts=len(unique),
        num_tokens=int(regular.sum()),
        mean_pairwise_cosine=float(pairwise.mean()),
        max_pairwise_cosine=float(pairwise.max()),
        mean_truncated_cosine=float((dense * torch.cat(truncated_parts)).sum(-1).mean()),
        sparse_positive_share=float((weights[regular] > 0).float().mean()) if bool(regular.any()) else 0.0,
        unk_share=float((ids[non_special] == unk_id).float().mean()) if bool(non_special.any()) else 0.0,
        all_finite=finite,
    )


# --------------------------------------------------------------------------------------------------
# Shapes and targets
# --------------------------------------------------------------------------------------------------


def _resolve_shape(preset: str, num_layers: int | None) -> CheckpointPreset:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    shape = PRESETS[preset]
    if num_layers is None:
        return shape
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    return dataclasses.replace(shape, num_hidden_layers=num_layers)


def _check_target(target: pathlib.Path, *, exist_ok: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    if not exist_ok and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty (exist_ok=True replaces the checkpoint files)")


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _sentencepiece_model() -> bytes:
    """Train the unigram model on SAMPLE_TEXTS (deterministic: whole corpus, in order, one thread)."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SAMPLE_TEXTS),
        model_writer=model,
        model_type="unigram",
        vocab_size=_SPM_VOCAB_SIZE,
        normalization_rule_name="nmt_nfkc",
        character_coverage=1.0,  # every character of the corpus gets a piece: no <unk> on SAMPLE_TEXTS
        byte_fallback=False,  # as XLM-R
        num_threads=1,
        input_sentence_size=0,  # use every sentence: no sampling
        shuffle_input_sentence=False,
        # sentencepiece's own ids, as in XLM-R's model; the fairseq offset turns them into 3 / 0 / 2.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return model.getvalue()


@functools.lru_cache(maxsize=1)
def _fairseq_vocab() -> tuple[tuple[str, float], ...]:
    """The XLM-R vocabulary: <s> <pad> </s> <unk>, sentencepiece pieces 3.. (id + 1), then <mask>."""
    processor = sentencepiece.SentencePieceProcessor(model_proto=_sentencepiece_model())
    own_specials = tuple(processor.id_to_piece(i) for i in range(3))
    if own_specials != ("<unk>", "<s>", "</s>"):
        raise RuntimeError(f"unexpected sentencepiece specials {own_specials}")
    pieces = tuple((processor.id_to_piece(i), float(processor.get_score(i))) for i in range(3, len(processor)))
    return tuple((token, 0.0) for token in _FAIRSEQ_SPECIALS) + pieces + ((_MASK, 0.0),)


def _precompiled_charsmap(model_proto: bytes) -> bytes:
    """`ModelProto.normalizer_spec.precompiled_charsmap` of a serialized sentencepiece model."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def _added_token(token_id: int, content: str) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": content == _MASK,  # XLM-R's <mask> swallows the space before it
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _special_token_entry(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": content == _MASK, "normalized": False, "rstrip": False, "single_word": False}


@functools.lru_cache(maxsize=1)
def _tokenizer_files() -> Mapping[str, bytes]:
    """The four tokenizer files, shaped as the ones in the BAAI/bge-m3 snapshot.

    `tokenizer.json` has the pipeline of bge-m3's file, as transformers 4 converted XLM-R (Precompiled +
    collapse-spaces normalizer, Metaspace pre-tokenizer), so raw `tokenizers` users meet bge-m3's quirks
    (an extra `▁` before `</s>` for text ending in whitespace). transformers 5 only takes the vocabulary,
    charsmap and post-processor from it and builds its own pre-tokenizer, which does not emit that `▁`.
    The configs are bge-m3's (transformers-4 era) files: `<mask>` has lstrip, model_max_length is 8192.
    """
    model_proto = _sentencepiece_model()
    vocab = _fairseq_vocab()
    mask_id = len(vocab) - 1
    metaspace = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True, "prepend_scheme": "always"}
    special_ids = {token: i for i, (token, _) in enumerate(vocab) if token in ("<s>", "</s>")}
    added_tokens = [_added_token(i, token) for i, token in enumerate(_FAIRSEQ_SPECIALS)]
    added_tokens.append(_added_token(mask_id, _MASK))
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {
                    "type": "Precompiled",
                    "precompiled_charsmap": base64.b64encode(_precompiled_charsmap(model_proto)).decode("ascii"),
                },
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [_special("<s>"), _sequence("A"), _special("</s>")],
            "pair": [
                *(_special("<s>"), _sequence("A"), _special("</s>")),
                *(_special("</s>"), _sequence("B"), _special("</s>")),
            ],
            "special_tokens": {
                token: {"id": token, "ids": [token_id], "tokens": [token]} for token, token_id in special_ids.items()
            },
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [list(entry) for entry in vocab], "byte_fallback": False},
    }
    tokenizer_config = {
        "added_tokens_decoder": {
            str(entry["id"]): {k: v for k, v in entry.items() if k != "id"} for entry in added_tokens
        },
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": True,
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": _MASK,
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "sp_model_kwargs": {},
        "tokenizer_class": "XLMRobertaTokenizer",
        "unk_token": "<unk>",
    }
    special_tokens_map = {
        "bos_token": _special_token_entry("<s>"),
        "cls_token": _special_token_entry("<s>"),
        "eos_token": _special_token_entry("</s>"),
        "mask_token": _special_token_entry(_MASK),
        "pad_token": _special_token_entry("<pad>"),
        "sep_token": _special_token_entry("</s>"),
        "unk_token": _special_token_entry("<unk>"),
    }
    return MappingProxyType(
        {
            "sentencepiece.bpe.model": model_proto,
            "tokenizer.json": _json_bytes(tokenizer_json),
            "tokenizer_config.json": _json_bytes(tokenizer_config),
            "special_tokens_map.json": _json_bytes(special_tokens_map),
        }
    )


def _special(token: str) -> dict[str, Any]:
    return {"SpecialToken": {"id": token, "type_id": 0}}


def _sequence(name: str) -> dict[str, Any]:
    return {"Sequence": {"id": name, "type_id": 0}}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Config and weights
# --------------------------------------------------------------------------------------------------


def _config_json(shape: CheckpointPreset, vocab_size: int) -> bytes:
    """bge-m3's config.json with this checkpoint's sizes."""
    config = {
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "model_type": "xlm-roberta",
        "num_attention_heads": shape.num_attention_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.33.0",
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    return _json_bytes(config)


def _encoder_tensor_specs(shape: CheckpointPreset, vocab_size: int) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(key, shape, kind) of every tensor in bge-m3's model.safetensors, in a fixed order."""
    h, i = shape.hidden_size, shape.intermediate_size
    yield "embeddings.word_embeddings.weight", (vocab_size, h), "word"
    yield "embeddings.position_embeddings.weight", (MAX_POSITION_EMBEDDINGS, h), "position"
    yield "embeddings.token_type_embeddings.weight", (1, h), "token_type"
    yield "embeddings.LayerNorm.weight", (h,), "ln_weight"
    yield "embeddings.LayerNorm.bias", (h,), "ln_bias"
    for n in range(shape.num_hidden_layers):
        prefix = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            yield f"{prefix}attention.self.{name}.weight", (h, h), "query_key" if name != "value" else "value_output"
            yield f"{prefix}attention.self.{name}.bias", (h,), "bias"
        yield f"{prefix}attention.output.dense.weight", (h, h), "value_output"
        yield f"{prefix}attention.output.dense.bias", (h,), "bias"
        yield f"{prefix}attention.output.LayerNorm.weight", (h,), "ln_weight"
        yield f"{prefix}attention.output.LayerNorm.bias", (h,), "ln_bias"
        yield f"{prefix}intermediate.dense.weight", (i, h), "ffn_in"
        yield f"{prefix}intermediate.dense.bias", (i,), "bias"
        yield f"{prefix}output.dense.weight", (h, i), "ffn_out"
        yield f"{prefix}output.dense.bias", (h,), "bias"
        yield f"{prefix}output.LayerNorm.weight", (h,), "ln_weight"
        yield f"{prefix}output.LayerNorm.bias", (h,), "ln_bias"
    yield "pooler.dense.weight", (h, h), "pooler"
    yield "pooler.dense.bias", (h,), "bias"


_MATRIX_GAINS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "query_key": _QUERY_KEY_GAIN,
        "value_output": _VALUE_OUTPUT_GAIN,
        "ffn_in": _FEED_FORWARD_GAIN,
        "pooler": _POOLER_GAIN,
        "colbert": _COLBERT_GAIN,
        "sparse": _SPARSE_GAIN,
    }
)


def _random_tensor(shape: tuple[int, ...], kind: str, generator: torch.Generator) -> torch.Tensor:
    """One fp32 tensor of the given kind, drawn from `generator`.

    Uniform rather than normal: `torch.rand` gives the same bits on every CPU, while `torch.randn`'s
    vectorised Box-Muller differs in the last bit between ATen's default and AVX2/AVX-512 kernels, and
    every later step is a single IEEE operation per element (or an exact sum), so the file bytes do not
    depend on the machine's SIMD level.
    """
    # Multiples of 2**-23 in (-1, 1): exact, and any sum of up to 2**29 of them is exact in float64.
    unit = torch.rand(shape, generator=generator, dtype=torch.float32).mul_(2.0).sub_(1.0)
    if kind in ("word", "position"):
        tensor = unit.mul_(_uniform_scale(_WORD_EMBEDDING_STD if kind == "word" else _POSITION_EMBEDDING_STD))
        tensor[1].zero_()  # padding_idx 1, as HF's init does
    elif kind == "token_type":
        tensor = unit.mul_(_uniform_scale(_TOKEN_TYPE_EMBEDDING_STD))
    elif kind == "ln_weight":
        tensor = unit.mul_(_uniform_scale(_LAYER_NORM_WEIGHT_STD)).add_(1.0)
    elif kind == "ln_bias":
        tensor = unit.mul_(_uniform_scale(_LAYER_NORM_BIAS_STD))
    elif kind == "bias":
        tensor = unit.mul_(_uniform_scale(_BIAS_STD))
    elif kind == "ffn_out":
        # Zero-sum rows: GELU outputs have a positive mean, which a random projection turns into one
        # vector shared by every token; left in, it dominated the sparse logit (10-75 % positive by seed).
        wide = unit.double()
        wide -= wide.sum(dim=1, keepdim=True) / shape[1]
        tensor = wide.mul_(_uniform_scale(_FEED_FORWARD_GAIN / math.sqrt(shape[1]))).float()
    else:
        tensor = unit.mul_(_uniform_scale(_MATRIX_GAINS[kind] / math.sqrt(shape[1])))
    return tensor


def _uniform_scale(std: float) -> float:
    """Half-width of the uniform distribution with standard deviation `std`."""
    return std * math.sqrt(3.0)


def _write_weights(directory: pathlib.Path, shape: CheckpointPreset, *, vocab_size: int, seed: int) -> None:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    specs = _encoder_tensor_specs(shape, vocab_size)
    encoder = {key: _random_tensor(dims, kind, generator) for key, dims, kind in specs}
    save_file(encoder, str(directory / "model.safetensors"), metadata={"format": "pt"})
    del encoder
    h = shape.hidden_size
    colbert = {"weight": _random_tensor((h, h), "colbert", generator), "bias": _random_tensor((h,), "bias", generator)}
    sparse = {"weight": _random_tensor((1, h), "sparse", generator), "bias": _random_tensor((1,), "bias", generator)}
    torch.save(colbert, directory / "colbert_linear.pt")
    torch.save(sparse, directory / "sparse_linear.pt")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m m3rag.testing DIR [--preset tiny|wide] [--seed N]``: build (or rebuild) a
    checkpoint in DIR and print its path, e.g. ``export M3RAG_MODEL=$(python -m m3rag.testing DIR)``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m m3rag.testing", description=main.__doc__)
    parser.add_argument("directory")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_checkpoint(args.directory, preset=args.preset, seed=args.seed, exist_ok=True))


if __name__ == "__main__":
    main()
