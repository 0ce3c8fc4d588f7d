//! Synthetic OpenRTB 2.6 traffic.
//!
//! The generator draws each request from weighted tables that follow the
//! shape of real exchange traffic: about two thirds web (`site`) and one
//! third in-app (`app`); banner, video and native impressions with the
//! sizes, durations and assets each device type gets; countries with their
//! regions, time zones and privacy signals (GDPR in Europe, CCPA in the US);
//! log-normally distributed floors; private-marketplace deals on some
//! impressions; the `tmax` values exchanges use. Arrivals form a Poisson
//! process at the asked rate: gaps are exponentially distributed, so bursts
//! happen as they do in production instead of a perfect metronome.
//!
//! Everything comes from one [`Rng`] seeded by the caller, and nothing reads
//! the clock: the same seed and options give the same file, byte for byte.
//! Domains, bundles and IP addresses are from ranges reserved for
//! documentation (`*.example`, `203.0.113.0/24`), never real ones.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use gavel_schemas::capture::{CaptureWriter, Header};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::limits::{DURATION_MAX, RATE_MAX, SYNTH_RECORDS_MAX};
use crate::rng::Rng;
use crate::wire::{Converter, Format};

/// Requests per second when `--rate` is not given: a moderate load that
/// any bidder build should keep up with.
pub const RATE_DEFAULT: f64 = 1_000.0;

/// Requests synthesized when neither `--count` nor `--duration` is given.
pub const COUNT_DEFAULT: u64 = 10_000;

/// How long a synthesized capture is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// Exactly this many requests.
    Count(u64),
    /// Requests until the arrival offsets reach this.
    Duration(Duration),
}

#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub length: Length,
    /// Mean arrival rate, requests per second.
    pub rate: f64,
    pub seed: u64,
    pub format: Format,
}

impl SynthOptions {
    fn validate(&self) -> Result<()> {
        if !(self.rate > 0.0 && self.rate <= RATE_MAX) {
            return Err(Error::Usage(format!(
                "--rate {} is out of range: use a rate above 0 and at most {RATE_MAX} requests/s",
                self.rate
            )));
        }
        match self.length {
            Length::Count(0) => Err(Error::Usage("--count must be at least 1".into())),
            Length::Count(n) if n > SYNTH_RECORDS_MAX => Err(Error::Usage(format!(
                "--count {n} is over the limit of {SYNTH_RECORDS_MAX} requests; \
                 synthesize fewer and replay them with --loop"
            ))),
            Length::Duration(d) if d.is_zero() || d > DURATION_MAX => Err(Error::Usage(format!(
                "--duration must be above 0 and at most {} s",
                DURATION_MAX.as_secs()
            ))),
            Length::Duration(d) if d.as_secs_f64() * self.rate > SYNTH_RECORDS_MAX as f64 => {
                Err(Error::Usage(format!(
                    "--duration {} s at --rate {} is over the limit of {SYNTH_RECORDS_MAX} \
                     requests; synthesize less and replay it with --loop",
                    d.as_secs_f64(),
                    self.rate
                )))
            }
            _ => Ok(()),
        }
    }

    /// The capture header's `source`: enough to synthesize the file again.
    pub fn source(&self) -> String {
        let length = match self.length {
            Length::Count(n) => format!("count={n}"),
            Length::Duration(d) => format!("duration={}s", d.as_secs_f64()),
        };
        format!(
            "gavel-loadgen synth seed={} rate={} {length} format={}",
            self.seed,
            self.rate,
            self.format.name()
        )
    }
}

/// What `synth` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSummary {
    pub records: u64,
    pub bytes: u64,
    /// Arrival offset of the last request.
    pub span: Duration,
}

/// Synthesizes a capture into `path`.
pub fn synthesize_file(options: &SynthOptions, path: &Path) -> Result<SynthSummary> {
    options.validate()?;
    let file = File::create(path).map_err(Error::file(path))?;
    let header = Header {
        // Synthetic traffic never happened: a fixed created-at keeps the
        // file reproducible.
        created_at_unix_ns: 0,
        source: options.source(),
    };
    let mut writer =
        CaptureWriter::new(BufWriter::new(file), &header).map_err(Error::capture(path))?;
    let mut generator = Generator::new(options.seed);
    let mut converter = Converter::default();
    let (mut json, mut body) = (Vec::new(), Vec::new());
    let mean_gap_ns = 1e9 / options.rate;
    let mut offset_ns = 0.0f64;
    let mut records = 0u64;
    loop {
        match options.length {
            Length::Count(n) if records >= n => break,
            Length::Duration(d) if offset_ns >= d.as_nanos() as f64 => break,
            _ => {}
        }
        json.clear();
        body.clear();
        let request = generator.request();
        serde_json::to_writer(&mut json, &request).map_err(|e| {
            Error::NoRequests(format!("encoding a synthesized request as JSON: {e}"))
        })?;
        // Decoding what was generated is the check that every synthesized
        // request is one Gavel accepts.
        converter
            .request(Format::Json, &json, options.format, &mut body)
            .map_err(|e| {
                Error::NoRequests(format!(
                    "synthesized request {records} does not decode ({e}); this is a bug in \
                     the generator: please report it with the seed {}",
                    options.seed
                ))
            })?;
        writer
            .write(offset_ns as u64, options.format.content_type(), &body)
            .map_err(Error::capture(path))?;
        records += 1;
        offset_ns += generator.rng.exponential(mean_gap_ns);
    }
    let span_ns = writer.last_offset_ns();
    let bytes = writer.position();
    let out = writer.finish().map_err(Error::capture(path))?;
    out.into_inner()
        .map_err(|e| Error::file(path)(e.into_error()))?
        .sync_all()
        .map_err(Error::file(path))?;
    Ok(SynthSummary {
        records,
        bytes,
        span: Duration::from_nanos(span_ns),
    })
}

/// One country's traffic share and what comes with it.
struct Country {
    /// ISO 3166-1 alpha-3, as OpenRTB's `geo.country` asks.
    code: &'static str,
    weight: u32,
    /// ISO 3166-2 subdivision, city, latitude, longitude, UTC offset (min).
    regions: &'static [(&'static str, &'static str, f64, f64, i64)],
    language: &'static str,
    currency: &'static str,
    /// Whether GDPR (or the UK's copy of it) applies.
    gdpr: bool,
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "USA",
        weight: 40,
        regions: &[
            ("CA", "Los Angeles", 34.05, -118.24, -480),
            ("NY", "New York", 40.71, -74.01, -300),
            ("TX", "Houston", 29.76, -95.37, -360),
            ("FL", "Miami", 25.76, -80.19, -300),
            ("IL", "Chicago", 41.88, -87.63, -360),
            ("WA", "Seattle", 47.61, -122.33, -480),
        ],
        language: "en",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "GBR",
        weight: 9,
        regions: &[
            ("ENG", "London", 51.51, -0.13, 0),
            ("SCT", "Glasgow", 55.86, -4.25, 0),
        ],
        language: "en",
        currency: "GBP",
        gdpr: true,
    },
    Country {
        code: "DEU",
        weight: 8,
        regions: &[
            ("BE", "Berlin", 52.52, 13.40, 60),
            ("BY", "Munich", 48.14, 11.58, 60),
        ],
        language: "de",
        currency: "EUR",
        gdpr: true,
    },
    Country {
        code: "FRA",
        weight: 6,
        regions: &[("IDF", "Paris", 48.86, 2.35, 60)],
        language: "fr",
        currency: "EUR",
        gdpr: true,
    },
    Country {
        code: "ESP",
        weight: 4,
        regions: &[("MD", "Madrid", 40.42, -3.70, 60)],
        language: "es",
        currency: "EUR",
        gdpr: true,
    },
    Country {
        code: "CAN",
        weight: 5,
        regions: &[("ON", "Toronto", 43.65, -79.38, -300)],
        language: "en",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "MEX",
        weight: 5,
        regions: &[("CMX", "Mexico City", 19.43, -99.13, -360)],
        language: "es",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "BRA",
        weight: 6,
        regions: &[("SP", "Sao Paulo", -23.55, -46.63, -180)],
        language: "pt",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "JPN",
        weight: 6,
        regions: &[("13", "Tokyo", 35.68, 139.69, 540)],
        language: "ja",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "IND",
        weight: 6,
        regions: &[("MH", "Mumbai", 19.08, 72.88, 330)],
        language: "en",
        currency: "USD",
        gdpr: false,
    },
    Country {
        code: "AUS",
        weight: 5,
        regions: &[("NSW", "Sydney", -33.87, 151.21, 600)],
        language: "en",
        currency: "USD",
        gdpr: false,
    },
];

/// Web sites: domain, name, IAB content categories (taxonomy 1.0).
const SITES: &[(&str, &str, &[&str])] = &[
    ("news.example.com", "Example News", &["IAB12"]),
    (
        "sports.example.org",
        "Example Sports",
        &["IAB17", "IAB17-12"],
    ),
    (
        "recipes.example.net",
        "Example Recipes",
        &["IAB8", "IAB8-5"],
    ),
    ("techreview.example.com", "Example Tech Review", &["IAB19"]),
    ("travel.example.org", "Example Travel", &["IAB20"]),
    ("autos.example.net", "Example Autos", &["IAB2"]),
    ("money.example.com", "Example Money", &["IAB13"]),
    ("celebrity.example.org", "Example Celebrity", &["IAB1-2"]),
];

/// Apps: bundle, name, IAB categories.
const APPS: &[(&str, &str, &[&str])] = &[
    ("com.example.puzzle", "Puzzle Quest", &["IAB9-30"]),
    ("com.example.weather", "Weather Now", &["IAB15-10"]),
    ("com.example.news", "Example News", &["IAB12"]),
    ("com.example.fitness", "Fit Daily", &["IAB7"]),
    ("com.example.streaming", "Example TV", &["IAB1-5"]),
];

/// OpenRTB device types (list 7.21): 2 PC, 3 connected TV, 4 phone,
/// 5 tablet, 7 set-top box.
const DEVICES_WEB: &[(i64, u32)] = &[(2, 45), (4, 40), (5, 15)];
const DEVICES_APP: &[(i64, u32)] = &[(4, 65), (5, 15), (3, 15), (7, 5)];

/// Banner sizes per device type, by weight.
const BANNERS_DESKTOP: &[((i64, i64), u32)] = &[
    ((300, 250), 40),
    ((728, 90), 25),
    ((160, 600), 10),
    ((300, 600), 15),
    ((970, 250), 10),
];
const BANNERS_PHONE: &[((i64, i64), u32)] = &[((320, 50), 50), ((300, 250), 35), ((320, 100), 15)];
const BANNERS_TABLET: &[((i64, i64), u32)] = &[((728, 90), 40), ((300, 250), 60)];

/// Media type of an impression: banner, video, native.
#[derive(Clone, Copy)]
enum Media {
    Banner,
    Video,
    Native,
}
const MEDIA_MIX: &[(Media, u32)] = &[(Media::Banner, 60), (Media::Video, 25), (Media::Native, 15)];

/// `tmax` in ms, as exchanges set it.
const TMAX_MS: &[(i64, u32)] = &[
    (100, 30),
    (120, 15),
    (150, 15),
    (200, 15),
    (250, 10),
    (300, 10),
    (500, 5),
];

/// Categories advertisers commonly block (IAB taxonomy 1.0).
const BLOCKED_CATEGORIES: &[&str] = &["IAB25", "IAB26", "IAB7-39", "IAB8-18", "IAB14-1"];

const SEATS: &[&str] = &["seat-1", "seat-2", "seat-3", "seat-7"];

/// A native 1.2 request: title, main image, description.
const NATIVE_REQUEST: &str = r#"{"ver":"1.2","context":1,"plcmttype":1,"assets":[{"id":1,"required":1,"title":{"len":90}},{"id":2,"required":1,"img":{"type":3,"wmin":300,"hmin":250}},{"id":3,"required":0,"data":{"type":2,"len":140}}]}"#;

/// Builds synthetic bid requests from its own random stream.
pub struct Generator {
    pub(crate) rng: Rng,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
        }
    }

    /// A UUID-shaped random identifier.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// A price with two decimals, log-normally around `median`.
    fn price(&mut self, median: f64, sigma: f64) -> f64 {
        (self.rng.log_normal(median, sigma) * 100.0)
            .round()
            .max(1.0)
            / 100.0
    }

    /// One synthetic OpenRTB 2.6 bid request.
    pub fn request(&mut self) -> Value {
        let country = self.rng.weighted_by(COUNTRIES, |country| country.weight);
        let in_app = self.rng.chance(0.35);
        let devicetype = *self
            .rng
            .weighted(if in_app { DEVICES_APP } else { DEVICES_WEB });
        let imp_count = *self.rng.weighted(&[(1usize, 80), (2, 15), (3, 4), (4, 1)]);
        let imps: Vec<Value> = (1..=imp_count)
            .map(|n| self.imp(n, devicetype, country))
            .collect();

        let mut request = json!({
            "id": self.uuid(),
            "imp": imps,
            "device": self.device(devicetype, in_app, country),
            "user": self.user(),
            "at": *self.rng.weighted(&[(1i64, 85), (2, 15)]),
            "tmax": *self.rng.weighted(TMAX_MS),
            "cur": [if self.rng.chance(0.9) { "USD" } else { country.currency }],
            "source": {
                "tid": self.uuid(),
                "schain": {
                    "complete": 1,
                    "ver": "1.0",
                    "nodes": [{
                        "asi": "exchange.example",
                        "sid": format!("pub-{}", self.rng.range(100, 999)),
                        "hp": 1
                    }]
                }
            },
            "regs": self.regs(country),
        });
        let (key, value) = if in_app {
            ("app", self.app(devicetype))
        } else {
            ("site", self.site(devicetype))
        };
        request[key] = value;
        if self.rng.chance(0.7) {
            let count = self.rng.range(1, 3) as usize;
            let start = self.rng.below(BLOCKED_CATEGORIES.len() as u64) as usize;
            let bcat: Vec<&str> = BLOCKED_CATEGORIES
                .iter()
                .cycle()
                .skip(start)
                .take(count)
                .copied()
                .collect();
            request["bcat"] = json!(bcat);
        }
        if self.rng.chance(0.3) {
            request["badv"] = json!(["competitor.example", "rival.example"]);
        }
        if country.gdpr {
            // A TCF consent string's shape, not a real one.
            request["user"]["consent"] = json!(format!(
                "CP{:016X}AAA{:08X}.YAAAAAAAAAAA",
                self.rng.next_u64(),
                self.rng.next_u64() as u32
            ));
        }
        request
    }

    fn imp(&mut self, n: usize, devicetype: i64, country: &Country) -> Value {
        // Connected TVs and set-top boxes only show video.
        let media = if matches!(devicetype, 3 | 7) {
            Media::Video
        } else {
            *self.rng.weighted(MEDIA_MIX)
        };
        let mut imp = json!({
            "id": n.to_string(),
            "tagid": format!("slot-{}", self.rng.range(1, 40)),
            "secure": i64::from(self.rng.chance(0.95)),
        });
        let floor_median = match media {
            Media::Banner => {
                imp["banner"] = self.banner(devicetype);
                0.5
            }
            Media::Video => {
                imp["video"] = self.video(devicetype);
                if self.rng.chance(0.3) {
                    imp["instl"] = json!(1);
                }
                4.0
            }
            Media::Native => {
                imp["native"] = json!({ "request": NATIVE_REQUEST, "ver": "1.2", "api": [3] });
                1.0
            }
        };
        let floor = self.price(floor_median, 0.6);
        if self.rng.chance(0.75) {
            imp["bidfloor"] = json!(floor);
            imp["bidfloorcur"] = json!(if self.rng.chance(0.85) {
                "USD"
            } else {
                country.currency
            });
        }
        if self.rng.chance(0.15) {
            let deals: Vec<Value> = (0..self.rng.range(1, 3))
                .map(|_| {
                    let mut deal = json!({
                        "id": format!("deal-{:05}", self.rng.below(100_000)),
                        "bidfloor": (floor * 1.5 * 100.0).round() / 100.0,
                        "bidfloorcur": "USD",
                        "at": *self.rng.weighted(&[(1i64, 70), (3, 30)]),
                    });
                    if self.rng.chance(0.5) {
                        deal["wseat"] = json!([self.rng.pick(SEATS)]);
                    }
                    deal
                })
                .collect();
            imp["pmp"] = json!({
                "private_auction": i64::from(self.rng.chance(0.3)),
                "deals": deals,
            });
        }
        if self.rng.chance(0.2) {
            imp["exp"] = json!(300);
        }
        imp
    }

    fn banner(&mut self, devicetype: i64) -> Value {
        let sizes = match devicetype {
            2 => BANNERS_DESKTOP,
            5 => BANNERS_TABLET,
            _ => BANNERS_PHONE,
        };
        let (w, h) = *self.rng.weighted(sizes);
        let mut format = vec![json!({ "w": w, "h": h })];
        if self.rng.chance(0.3) {
            let (w2, h2) = *self.rng.weighted(sizes);
            if (w2, h2) != (w, h) {
                format.push(json!({ "w": w2, "h": h2 }));
            }
        }
        json!({
            "format": format,
            "w": w,
            "h": h,
            "pos": *self.rng.weighted(&[(1i64, 60), (3, 40)]),
            "api": [3, 5],
            "battr": [3, 8],
        })
    }

    fn video(&mut self, devicetype: i64) -> Value {
        let (w, h) = if matches!(devicetype, 3 | 7) {
            *self.rng.pick(&[(1920i64, 1080i64), (1280, 720)])
        } else {
            *self.rng.pick(&[(640i64, 360i64), (640, 480), (1280, 720)])
        };
        let maxduration = *self.rng.weighted(&[(15i64, 30), (30, 50), (60, 20)]);
        let skip = self.rng.chance(0.4);
        let mut video = json!({
            "mimes": ["video/mp4", "video/webm", "application/javascript"],
            "minduration": 5,
            "maxduration": maxduration,
            "protocols": [2, 3, 5, 6, 7, 8],
            "w": w,
            "h": h,
            // Placement subtypes (list 7.4): 1 instream, 3 interstitial, 4 standalone.
            "plcmt": *self.rng.weighted(&[(1i64, 60), (3, 25), (4, 15)]),
            "linearity": 1,
            "skip": i64::from(skip),
            "startdelay": *self.rng.weighted(&[(0i64, 70), (-1, 20), (-2, 10)]),
            "playbackmethod": [*self.rng.weighted(&[(1i64, 50), (2, 30), (6, 20)])],
            "api": [2, 7],
            "pos": *self.rng.weighted(&[(1i64, 50), (7, 50)]),
        });
        if skip {
            video["skipmin"] = json!(15);
            video["skipafter"] = json!(5);
        }
        video
    }

    fn site(&mut self, devicetype: i64) -> Value {
        let (domain, name, cat) = *self.rng.pick(SITES);
        let path = *self.rng.pick(&["", "article/", "video/", "gallery/"]);
        json!({
            "id": format!("site-{}", self.rng.range(1000, 9999)),
            "name": name,
            "domain": domain,
            "cat": cat,
            "page": format!("https://{domain}/{path}{}", self.rng.range(10_000, 99_999)),
            "ref": "https://search.example/",
            "publisher": {
                "id": format!("pub-{}", self.rng.range(100, 999)),
                "name": name,
                "domain": domain,
            },
            // Phones and tablets get the mobile-optimized site.
            "mobile": i64::from(matches!(devicetype, 4 | 5)),
        })
    }

    fn app(&mut self, devicetype: i64) -> Value {
        let (bundle, name, cat) = *self.rng.pick(APPS);
        let store = if matches!(devicetype, 3 | 7) {
            "https://tvstore.example/app/"
        } else if self.rng.chance(0.5) {
            "https://apps.example/ios/"
        } else {
            "https://play.example/store/apps/details?id="
        };
        json!({
            "id": format!("app-{}", self.rng.range(1000, 9999)),
            "name": name,
            "bundle": bundle,
            "storeurl": format!("{store}{bundle}"),
            "cat": cat,
            "ver": format!("{}.{}.{}", self.rng.range(1, 9), self.rng.range(0, 20), self.rng.range(0, 9)),
            "publisher": { "id": format!("pub-{}", self.rng.range(100, 999)), "name": name },
        })
    }

    fn device(&mut self, devicetype: i64, in_app: bool, country: &Country) -> Value {
        let (make, model, os, osv, ua, w, h) = match devicetype {
            2 => *self.rng.pick(&[
                ("", "", "Windows", "10", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 1920, 1080),
                ("Apple", "Macintosh", "macOS", "14.4", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", 1440, 900),
            ]),
            3 | 7 => *self.rng.pick(&[
                ("Roku", "Roku Ultra", "Roku", "12.5", "Roku/DVP-12.5 (12.5.0.4178)", 1920, 1080),
                ("Apple", "Apple TV", "tvOS", "17.4", "AppleCoreMedia/1.0.0.21L227 (Apple TV; U; CPU OS 17_4 like Mac OS X)", 1920, 1080),
            ]),
            5 => *self.rng.pick(&[
                ("Apple", "iPad", "iOS", "17.4", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", 820, 1180),
                ("Samsung", "SM-X710", "Android", "14", "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 800, 1280),
            ]),
            _ => *self.rng.pick(&[
                ("Apple", "iPhone", "iOS", "17.4", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", 390, 844),
                ("Google", "Pixel 8", "Android", "14", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", 412, 915),
                ("Samsung", "SM-S921B", "Android", "14", "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", 384, 832),
            ]),
        };
        let (region, city, lat, lon, utcoffset) = *self.rng.pick(country.regions);
        // Exchanges round coordinates for privacy; two decimals is ~1 km.
        let jitter = |rng: &mut Rng| (rng.unit() - 0.5) * 0.2;
        let lat = ((lat + jitter(&mut self.rng)) * 100.0).round() / 100.0;
        let lon = ((lon + jitter(&mut self.rng)) * 100.0).round() / 100.0;
        let mut device = json!({
            "ua": ua,
            "ip": format!("203.0.113.{}", self.rng.range(1, 254)),
            "devicetype": devicetype,
            "os": os,
            "osv": osv,
            "w": w,
            "h": h,
            "js": 1,
            "language": country.language,
            "dnt": 0,
            "lmt": i64::from(self.rng.chance(0.1)),
            // Connection types (list 7.11): 1 ethernet, 2 wifi, 6 4G, 7 5G.
            "connectiontype": match devicetype {
                2 | 3 | 7 => *self.rng.weighted(&[(1i64, 40), (2, 60)]),
                _ => *self.rng.weighted(&[(2i64, 50), (6, 35), (7, 15)]),
            },
            "geo": {
                "lat": lat,
                "lon": lon,
                "type": 2,
                "country": country.code,
                "region": region,
                "city": city,
                "utcoffset": utcoffset,
            },
        });
        if !make.is_empty() {
            device["make"] = json!(make);
            device["model"] = json!(model);
        }
        if in_app {
            device["ifa"] = json!(self.uuid());
        }
        device
    }

    fn user(&mut self) -> Value {
        let mut user = json!({ "id": format!("{:016x}", self.rng.next_u64()) });
        if self.rng.chance(0.5) {
            user["buyeruid"] = json!(format!("b{:015x}", self.rng.next_u64() >> 4));
        }
        if self.rng.chance(0.2) {
            user["eids"] = json!([{
                "source": "uid.example",
                "uids": [{ "id": self.uuid(), "atype": 1 }],
            }]);
        }
        if self.rng.chance(0.3) {
            let segments: Vec<Value> = (0..self.rng.range(1, 4))
                .map(|_| json!({ "id": format!("seg-{}", self.rng.range(1, 500)) }))
                .collect();
            user["data"] = json!([{ "id": "dmp-1", "name": "Example DMP", "segment": segments }]);
        }
        user
    }

    fn regs(&mut self, country: &Country) -> Value {
        if country.gdpr {
            json!({ "gdpr": 1, "coppa": 0 })
        } else if country.code == "USA" {
            json!({ "us_privacy": *self.rng.pick(&["1YNN", "1YNY", "1---"]), "coppa": 0 })
        } else {
            json!({ "coppa": 0 })
        }
    }
}
