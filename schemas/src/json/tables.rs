//! Borrowed mirror structs of every OpenRTB 2.6 object, one declaration each.
//!
//! Field names, order and types follow `schemas/openrtb.fbs` exactly; the
//! `tables!` macro derives serde for each struct and implements the
//! flatbuffer builder and reader from the same field list. A field that is
//! not an `Option` is required: decoding fails without it.

use flatbuffers::WIPOffset;
use serde::{Deserialize, Serialize};

use super::JsonError;
use super::fields::{Builder, Elem, Ext, Field, Str, table_field};
use crate::openrtb as fb;

/// A mirror struct that can be built into and read from its flatbuffer table.
pub(super) trait Table<'a>: Sized {
    type Fb<'x>;
    /// Deepest chain of tables from this one down, itself included. Computed
    /// at compile time from the field types; a schema in which a table could
    /// contain itself would make this a const-evaluation cycle, a compile
    /// error, so every depth the JSON path can build is known here.
    const TABLE_DEPTH: usize;
    fn build<'b>(&self, b: &mut Builder<'b>) -> WIPOffset<Self::Fb<'b>>;
    fn read(fb: Self::Fb<'a>) -> Result<Self, JsonError>;
}

macro_rules! tables {
    ($(
        $(#[$doc:meta])*
        $name:ident($args:ident) {
            $( $(#[$fattr:meta])* $field:ident : $ty:ty, )*
        }
    )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(bound(deserialize = "'de: 'a"))]
        pub struct $name<'a> {
            $(
                $(#[$fattr])*
                #[serde(skip_serializing_if = "Field::is_absent")]
                pub $field: $ty,
            )*
        }

        impl<'a> Table<'a> for $name<'a> {
            type Fb<'x> = fb::$name<'x>;
            const TABLE_DEPTH: usize =
                1 + max_of(&[$( <$ty as Field<'a>>::TABLE_DEPTH, )*]);
            fn build<'b>(&self, b: &mut Builder<'b>) -> WIPOffset<fb::$name<'b>> {
                let args = fb::$args { $( $field: Field::build(&self.$field, b), )* };
                b.table_created();
                fb::$name::create(&mut b.fbb, &args)
            }
            fn read(fb: fb::$name<'a>) -> Result<Self, JsonError> {
                Ok(Self { $( $field: Field::read(fb.$field())?, )* })
            }
        }

        table_field!($name);
    )*

    /// Most fields of any one table: bounds the size of a vtable.
    pub(super) const TABLE_FIELDS_MAX: usize =
        max_of(&[$( <[&str]>::len(&[$( stringify!($field), )*]), )*]);
    };
}

/// The largest of `values` (0 for none), usable in constants.
const fn max_of(values: &[usize]) -> usize {
    let (mut max, mut i) = (0, 0);
    while i < values.len() {
        if values[i] > max {
            max = values[i];
        }
        i += 1;
    }
    max
}

tables! {
    /// OpenRTB 2.6 section 3.2.1.
    BidRequest(BidRequestArgs) {
        id: Str<'a>,
        imp: Vec<Imp<'a>>,
        site: Option<Box<Site<'a>>>,
        app: Option<Box<App<'a>>>,
        dooh: Option<Box<DOOH<'a>>>,
        device: Option<Box<Device<'a>>>,
        user: Option<Box<User<'a>>>,
        test: Option<i32>,
        at: Option<i32>,
        tmax: Option<i32>,
        wseat: Option<Vec<Str<'a>>>,
        bseat: Option<Vec<Str<'a>>>,
        allimps: Option<i32>,
        cur: Option<Vec<Str<'a>>>,
        wlang: Option<Vec<Str<'a>>>,
        wlangb: Option<Vec<Str<'a>>>,
        acat: Option<Vec<Str<'a>>>,
        bcat: Option<Vec<Str<'a>>>,
        cattax: Option<i32>,
        badv: Option<Vec<Str<'a>>>,
        bapp: Option<Vec<Str<'a>>>,
        source: Option<Box<Source<'a>>>,
        regs: Option<Box<Regs<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.2.
    Source(SourceArgs) {
        fd: Option<i32>,
        tid: Option<Str<'a>>,
        pchain: Option<Str<'a>>,
        schain: Option<SupplyChain<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.3.
    Regs(RegsArgs) {
        coppa: Option<i32>,
        gdpr: Option<i32>,
        us_privacy: Option<Str<'a>>,
        gpp: Option<Str<'a>>,
        gpp_sid: Option<Vec<i32>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.4.
    Imp(ImpArgs) {
        id: Str<'a>,
        metric: Option<Vec<Metric<'a>>>,
        banner: Option<Box<Banner<'a>>>,
        video: Option<Box<Video<'a>>>,
        audio: Option<Box<Audio<'a>>>,
        native: Option<Box<Native<'a>>>,
        pmp: Option<Box<Pmp<'a>>>,
        displaymanager: Option<Str<'a>>,
        displaymanagerver: Option<Str<'a>>,
        instl: Option<i32>,
        tagid: Option<Str<'a>>,
        bidfloor: Option<f64>,
        bidfloorcur: Option<Str<'a>>,
        clickbrowser: Option<i32>,
        secure: Option<i32>,
        iframebuster: Option<Vec<Str<'a>>>,
        rwdd: Option<i32>,
        ssai: Option<i32>,
        exp: Option<i32>,
        qty: Option<Qty<'a>>,
        dt: Option<f64>,
        refresh: Option<Refresh<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.5.
    Metric(MetricArgs) {
        #[serde(rename = "type")]
        type_: Option<Str<'a>>,
        value: Option<f64>,
        vendor: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.6.
    Banner(BannerArgs) {
        format: Option<Vec<Format<'a>>>,
        w: Option<i32>,
        h: Option<i32>,
        btype: Option<Vec<i32>>,
        battr: Option<Vec<i32>>,
        pos: Option<i32>,
        mimes: Option<Vec<Str<'a>>>,
        topframe: Option<i32>,
        expdir: Option<Vec<i32>>,
        api: Option<Vec<i32>>,
        id: Option<Str<'a>>,
        vcm: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.7.
    Video(VideoArgs) {
        mimes: Option<Vec<Str<'a>>>,
        minduration: Option<i32>,
        maxduration: Option<i32>,
        startdelay: Option<i32>,
        maxseq: Option<i32>,
        poddur: Option<i32>,
        protocols: Option<Vec<i32>>,
        w: Option<i32>,
        h: Option<i32>,
        podid: Option<Str<'a>>,
        podseq: Option<i32>,
        rqddurs: Option<Vec<i32>>,
        plcmt: Option<i32>,
        linearity: Option<i32>,
        skip: Option<i32>,
        skipmin: Option<i32>,
        skipafter: Option<i32>,
        slotinpod: Option<i32>,
        mincpmpersec: Option<f64>,
        battr: Option<Vec<i32>>,
        maxextended: Option<i32>,
        minbitrate: Option<i32>,
        maxbitrate: Option<i32>,
        boxingallowed: Option<i32>,
        playbackmethod: Option<Vec<i32>>,
        playbackend: Option<i32>,
        delivery: Option<Vec<i32>>,
        pos: Option<i32>,
        companionad: Option<Vec<Banner<'a>>>,
        api: Option<Vec<i32>>,
        companiontype: Option<Vec<i32>>,
        poddedupe: Option<Vec<i32>>,
        durfloors: Option<Vec<DurFloors<'a>>>,
        ext: Option<Ext<'a>>,
        placement: Option<i32>,
        sequence: Option<i32>,
    }
    /// OpenRTB 2.6 section 3.2.8.
    Audio(AudioArgs) {
        mimes: Option<Vec<Str<'a>>>,
        minduration: Option<i32>,
        maxduration: Option<i32>,
        poddur: Option<i32>,
        protocols: Option<Vec<i32>>,
        startdelay: Option<i32>,
        rqddurs: Option<Vec<i32>>,
        podid: Option<Str<'a>>,
        podseq: Option<i32>,
        slotinpod: Option<i32>,
        mincpmpersec: Option<f64>,
        battr: Option<Vec<i32>>,
        maxextended: Option<i32>,
        minbitrate: Option<i32>,
        maxbitrate: Option<i32>,
        delivery: Option<Vec<i32>>,
        companionad: Option<Vec<Banner<'a>>>,
        api: Option<Vec<i32>>,
        companiontype: Option<Vec<i32>>,
        maxseq: Option<i32>,
        feed: Option<i32>,
        stitched: Option<i32>,
        nvol: Option<i32>,
        durfloors: Option<Vec<DurFloors<'a>>>,
        ext: Option<Ext<'a>>,
        sequence: Option<i32>,
    }
    /// OpenRTB 2.6 section 3.2.9.
    Native(NativeArgs) {
        request: Option<Str<'a>>,
        ver: Option<Str<'a>>,
        api: Option<Vec<i32>>,
        battr: Option<Vec<i32>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.10.
    Format(FormatArgs) {
        w: Option<i32>,
        h: Option<i32>,
        wratio: Option<i32>,
        hratio: Option<i32>,
        wmin: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.11.
    Pmp(PmpArgs) {
        private_auction: Option<i32>,
        deals: Option<Vec<Deal<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.12.
    Deal(DealArgs) {
        id: Str<'a>,
        bidfloor: Option<f64>,
        bidfloorcur: Option<Str<'a>>,
        at: Option<i32>,
        wseat: Option<Vec<Str<'a>>>,
        wadomain: Option<Vec<Str<'a>>>,
        guar: Option<i32>,
        mincpmpersec: Option<f64>,
        durfloors: Option<Vec<DurFloors<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.13.
    Site(SiteArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        domain: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        sectioncat: Option<Vec<Str<'a>>>,
        pagecat: Option<Vec<Str<'a>>>,
        page: Option<Str<'a>>,
        #[serde(rename = "ref")]
        ref_: Option<Str<'a>>,
        search: Option<Str<'a>>,
        mobile: Option<i32>,
        privacypolicy: Option<i32>,
        publisher: Option<Publisher<'a>>,
        content: Option<Box<Content<'a>>>,
        keywords: Option<Str<'a>>,
        kwarray: Option<Vec<Str<'a>>>,
        inventorypartnerdomain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.14.
    App(AppArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        bundle: Option<Str<'a>>,
        domain: Option<Str<'a>>,
        storeurl: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        sectioncat: Option<Vec<Str<'a>>>,
        pagecat: Option<Vec<Str<'a>>>,
        ver: Option<Str<'a>>,
        privacypolicy: Option<i32>,
        paid: Option<i32>,
        publisher: Option<Publisher<'a>>,
        content: Option<Box<Content<'a>>>,
        keywords: Option<Str<'a>>,
        kwarray: Option<Vec<Str<'a>>>,
        inventorypartnerdomain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.15.
    Publisher(PublisherArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        domain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.16.
    Content(ContentArgs) {
        id: Option<Str<'a>>,
        episode: Option<i32>,
        title: Option<Str<'a>>,
        series: Option<Str<'a>>,
        season: Option<Str<'a>>,
        artist: Option<Str<'a>>,
        genre: Option<Str<'a>>,
        gtax: Option<i32>,
        genres: Option<Vec<Str<'a>>>,
        album: Option<Str<'a>>,
        isrc: Option<Str<'a>>,
        producer: Option<Producer<'a>>,
        url: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        prodq: Option<i32>,
        context: Option<i32>,
        contentrating: Option<Str<'a>>,
        userrating: Option<Str<'a>>,
        qagmediarating: Option<i32>,
        keywords: Option<Str<'a>>,
        kwarray: Option<Vec<Str<'a>>>,
        livestream: Option<i32>,
        sourcerelationship: Option<i32>,
        len: Option<i32>,
        language: Option<Str<'a>>,
        langb: Option<Str<'a>>,
        embeddable: Option<i32>,
        data: Option<Vec<Data<'a>>>,
        network: Option<Network<'a>>,
        channel: Option<Channel<'a>>,
        realtime: Option<i32>,
        firstbroadcast: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.17.
    Producer(ProducerArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        domain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.18.
    Device(DeviceArgs) {
        geo: Option<Box<Geo<'a>>>,
        dnt: Option<i32>,
        lmt: Option<i32>,
        ua: Option<Str<'a>>,
        sua: Option<Box<UserAgent<'a>>>,
        ip: Option<Str<'a>>,
        ipv6: Option<Str<'a>>,
        devicetype: Option<i32>,
        make: Option<Str<'a>>,
        model: Option<Str<'a>>,
        os: Option<Str<'a>>,
        osv: Option<Str<'a>>,
        hwv: Option<Str<'a>>,
        h: Option<i32>,
        w: Option<i32>,
        ppi: Option<i32>,
        pxratio: Option<f64>,
        js: Option<i32>,
        geofetch: Option<i32>,
        flashver: Option<Str<'a>>,
        language: Option<Str<'a>>,
        langb: Option<Str<'a>>,
        carrier: Option<Str<'a>>,
        mccmnc: Option<Str<'a>>,
        connectiontype: Option<i32>,
        ifa: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
        didsha1: Option<Str<'a>>,
        didmd5: Option<Str<'a>>,
        dpidsha1: Option<Str<'a>>,
        dpidmd5: Option<Str<'a>>,
        macsha1: Option<Str<'a>>,
        macmd5: Option<Str<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.19.
    Geo(GeoArgs) {
        lat: Option<f64>,
        lon: Option<f64>,
        #[serde(rename = "type")]
        type_: Option<i32>,
        accuracy: Option<i32>,
        lastfix: Option<i32>,
        ipservice: Option<i32>,
        country: Option<Str<'a>>,
        region: Option<Str<'a>>,
        regionfips104: Option<Str<'a>>,
        metro: Option<Str<'a>>,
        city: Option<Str<'a>>,
        zip: Option<Str<'a>>,
        utcoffset: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.20.
    User(UserArgs) {
        id: Option<Str<'a>>,
        buyeruid: Option<Str<'a>>,
        keywords: Option<Str<'a>>,
        kwarray: Option<Vec<Str<'a>>>,
        customdata: Option<Str<'a>>,
        geo: Option<Box<Geo<'a>>>,
        data: Option<Vec<Data<'a>>>,
        consent: Option<Str<'a>>,
        eids: Option<Vec<EID<'a>>>,
        ext: Option<Ext<'a>>,
        yob: Option<i32>,
        gender: Option<Str<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.21.
    Data(DataArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        cids: Option<Vec<Str<'a>>>,
        segment: Option<Vec<Segment<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.22.
    Segment(SegmentArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        value: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.23.
    Network(NetworkArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        domain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.24.
    Channel(ChannelArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        domain: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.25.
    SupplyChain(SupplyChainArgs) {
        complete: Option<i32>,
        nodes: Option<Vec<SupplyChainNode<'a>>>,
        ver: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.26.
    SupplyChainNode(SupplyChainNodeArgs) {
        asi: Option<Str<'a>>,
        sid: Option<Str<'a>>,
        rid: Option<Str<'a>>,
        name: Option<Str<'a>>,
        domain: Option<Str<'a>>,
        hp: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.27.
    EID(EIDArgs) {
        inserter: Option<Str<'a>>,
        source: Option<Str<'a>>,
        matcher: Option<Str<'a>>,
        mm: Option<i32>,
        uids: Option<Vec<UID<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.28.
    UID(UIDArgs) {
        id: Option<Str<'a>>,
        atype: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.29.
    UserAgent(UserAgentArgs) {
        browsers: Option<Vec<BrandVersion<'a>>>,
        platform: Option<BrandVersion<'a>>,
        mobile: Option<i32>,
        architecture: Option<Str<'a>>,
        bitness: Option<Str<'a>>,
        model: Option<Str<'a>>,
        source: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.30.
    BrandVersion(BrandVersionArgs) {
        brand: Option<Str<'a>>,
        version: Option<Vec<Str<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.31.
    Qty(QtyArgs) {
        multiplier: Option<f64>,
        sourcetype: Option<i32>,
        vendor: Option<Str<'a>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.32.
    DOOH(DOOHArgs) {
        id: Option<Str<'a>>,
        name: Option<Str<'a>>,
        venuetype: Option<Vec<Str<'a>>>,
        venuetypetax: Option<i32>,
        publisher: Option<Publisher<'a>>,
        domain: Option<Str<'a>>,
        keywords: Option<Str<'a>>,
        content: Option<Box<Content<'a>>>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.33.
    Refresh(RefreshArgs) {
        refsettings: Option<Vec<RefSettings<'a>>>,
        count: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.34.
    RefSettings(RefSettingsArgs) {
        reftype: Option<i32>,
        minint: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 3.2.35.
    DurFloors(DurFloorsArgs) {
        mindur: Option<i32>,
        maxdur: Option<i32>,
        bidfloor: Option<f64>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 4.2.1.
    BidResponse(BidResponseArgs) {
        id: Str<'a>,
        seatbid: Option<Vec<SeatBid<'a>>>,
        bidid: Option<Str<'a>>,
        cur: Option<Str<'a>>,
        customdata: Option<Str<'a>>,
        nbr: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 4.2.2.
    SeatBid(SeatBidArgs) {
        bid: Vec<Bid<'a>>,
        seat: Option<Str<'a>>,
        group: Option<i32>,
        ext: Option<Ext<'a>>,
    }
    /// OpenRTB 2.6 section 4.2.3.
    Bid(BidArgs) {
        id: Str<'a>,
        impid: Str<'a>,
        price: f64,
        nurl: Option<Str<'a>>,
        burl: Option<Str<'a>>,
        lurl: Option<Str<'a>>,
        adm: Option<Str<'a>>,
        adid: Option<Str<'a>>,
        adomain: Option<Vec<Str<'a>>>,
        bundle: Option<Str<'a>>,
        iurl: Option<Str<'a>>,
        cid: Option<Str<'a>>,
        crid: Option<Str<'a>>,
        tactic: Option<Str<'a>>,
        cattax: Option<i32>,
        cat: Option<Vec<Str<'a>>>,
        attr: Option<Vec<i32>>,
        apis: Option<Vec<i32>>,
        protocol: Option<i32>,
        qagmediarating: Option<i32>,
        language: Option<Str<'a>>,
        langb: Option<Str<'a>>,
        dealid: Option<Str<'a>>,
        w: Option<i32>,
        h: Option<i32>,
        wratio: Option<i32>,
        hratio: Option<i32>,
        exp: Option<i32>,
        dur: Option<i32>,
        mtype: Option<i32>,
        slotinpod: Option<i32>,
        ext: Option<Ext<'a>>,
        api: Option<i32>,
    }
}
